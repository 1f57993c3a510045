"""Search engine: ranking, prefixes, phrases, synonyms, typo fixes, snippets, and hostile queries."""

import pytest

from app.content.library import ContentError, load_library
from app.content.search import MAX_UNITS, atoms, edit_distance
from tests.content.test_library import write_param


def write_synonyms(root, text: str) -> None:
    (root / "search").mkdir(parents=True, exist_ok=True)
    (root / "search" / "synonyms.yaml").write_text(text)


def test_atoms_split_snake_case_like_the_index_tokenizer():
    assert atoms("lora_alpha, r=8") == ("lora", "alpha", "r", "8")


def test_edit_distance_counts_a_swap_of_neighbours_once_and_stops_at_its_bound():
    assert edit_distance("alhpa", "alpha", 2) == 1
    assert edit_distance("acumulation", "accumulation", 2) == 1
    assert edit_distance("memory", "zzzzzzzz", 2) == 3


def test_title_hit_beats_body_hit(tmp_path):
    write_param(tmp_path, "r", title="Rank of the update")
    write_param(tmp_path, "lora_alpha", title="Alpha", body=" ".join(["rank"] * 30))
    hits = load_library(tmp_path).index.search("rank")
    assert [hit.page.slug for hit in hits] == ["r", "lora_alpha"]
    assert hits[0].score > hits[1].score


def test_prefix_matches_while_typing_and_marks_snippet(tmp_path):
    write_param(tmp_path, "lora_dropout", title="Dropout on the LoRA branch", body="Zeroes inputs: dropout regularises.")
    hits = load_library(tmp_path).index.search("drop")
    assert [hit.page.slug for hit in hits] == ["lora_dropout"]
    assert "<mark>dropout</mark> regularises" in hits[0].snippet_html


def test_a_prefix_the_stemmed_index_cannot_complete_still_finds_the_word(tmp_path):
    write_param(tmp_path, "gradient_checkpointing", title="Recompute", body="Checkpointing saves memory.")
    write_param(tmp_path, "r", body="Unrelated.")
    hits = load_library(tmp_path).index.search("checkpointi")  # the index holds the stem "checkpoint"
    assert [hit.page.slug for hit in hits] == ["gradient_checkpointing"]


def test_pages_matching_every_word_come_before_pages_matching_some(tmp_path):
    write_param(tmp_path, "r", title="Rank", body="memory cost")
    write_param(tmp_path, "lora_alpha", title="Alpha", body="rank rank rank")
    hits = load_library(tmp_path).index.search("rank memory")
    assert [hit.page.slug for hit in hits] == ["r", "lora_alpha"]


def test_stemming_matches_other_forms_of_a_word(tmp_path):
    write_param(tmp_path, "r", body="The loss decreases slowly.")
    assert [hit.page.slug for hit in load_library(tmp_path).index.search("decreasing ")] == ["r"]


def test_quoted_phrase_needs_the_words_together(tmp_path):
    write_param(tmp_path, "r", body="a low rank update")
    write_param(tmp_path, "lora_alpha", body="rank is low here")
    index = load_library(tmp_path).index
    assert [hit.page.slug for hit in index.search('"low rank"')] == ["r"]
    assert {hit.page.slug for hit in index.search("low rank")} == {"r", "lora_alpha"}


def test_exact_field_name_comes_first(tmp_path):
    write_param(tmp_path, "r", title="The update's size", body="Small.")
    write_param(tmp_path, "lora_alpha", title="r r r", body="r " * 50)
    assert load_library(tmp_path).index.search("r")[0].page.slug == "r"


def test_synonyms_from_content_widen_the_query(tmp_path):
    write_param(tmp_path, "r", body="Training ran out of memory on the GPU.")
    write_param(tmp_path, "lora_alpha", body="Memory is plentiful.")
    write_synonyms(tmp_path, "groups:\n  - [oom, out of memory]\n")
    assert [hit.page.slug for hit in load_library(tmp_path).index.search("OOM")] == ["r"]


def test_a_bad_synonym_file_stops_loading_with_the_field(tmp_path):
    write_param(tmp_path, "r")
    write_synonyms(tmp_path, "groups:\n  - [lonely]\n")
    with pytest.raises(ContentError) as error:
        load_library(tmp_path)
    assert "groups" in error.value.field_name


@pytest.mark.parametrize("typed", ["lora_alhpa", "lora alpah", "lroa_alpha"])
def test_a_misspelt_word_is_corrected_to_the_nearest_word_of_the_library(tmp_path, typed):
    write_param(tmp_path, "lora_alpha", title="Scaling numerator", body="The alpha of LoRA.")
    write_param(tmp_path, "r", body="Rank.")
    assert [hit.page.slug for hit in load_library(tmp_path).index.search(typed)][:1] == ["lora_alpha"]


def test_empty_and_unmatched_queries(tmp_path):
    write_param(tmp_path, "r")
    index = load_library(tmp_path).index
    assert index.search("") == []
    assert index.search("   ") == []
    assert index.search("zzzz") == []


@pytest.mark.parametrize("query", [
    '"', '""', '"unclosed', "NOT", "a AND", "OR OR", "*", "rank*", "NEAR(rank summary", "^rank", "title:rank",
    "rank -summary", "(((", "rank\x00summary", "r" * 10_000, " ".join(["rank"] * 500), "ранг 秩 ∞", "{'q'}",
])
def test_hostile_queries_never_raise(tmp_path, query):
    write_param(tmp_path, "r", title="Rank", body="The rank summary.")
    hits = load_library(tmp_path).index.search(query)
    assert all(hit.page.slug == "r" for hit in hits)


def test_query_is_bounded_in_length_and_units(tmp_path):
    write_param(tmp_path, "r")
    index = load_library(tmp_path).index
    units, _, pairs = index.parse(" ".join(f"word{number}" for number in range(200)))
    assert len(units) == MAX_UNITS and len(pairs) <= 2 * MAX_UNITS


def test_snippet_escapes_html_from_content_and_query(tmp_path):
    write_param(tmp_path, "r", body='a <b>rank</b> thing <script>alert(1)</script>')
    for query in ("rank", "<script>alert(1)</script>", 'rank"><img src=x onerror=alert(1)>'):
        for hit in load_library(tmp_path).index.search(query):
            html = hit.snippet_html.replace("<mark>", "").replace("</mark>", "")
            assert "<" not in html and ">" not in html
