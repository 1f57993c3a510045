"""Search ranking: a title hit beats a body hit; prefixes match as you type."""

from app.content.library import load_library
from app.content.search import tokenize
from tests.content.test_library import write_param


def test_tokenize_splits_snake_case():
    assert tokenize("lora_alpha, r=8") == ["lora_alpha", "lora", "alpha", "r", "8"]


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


def test_all_words_must_match_when_possible(tmp_path):
    write_param(tmp_path, "r", title="Rank", body="memory cost")
    write_param(tmp_path, "lora_alpha", title="Alpha", body="rank")
    hits = load_library(tmp_path).index.search("rank memory")
    assert [hit.page.slug for hit in hits] == ["r"]


def test_empty_and_unmatched_queries(tmp_path):
    write_param(tmp_path, "r")
    index = load_library(tmp_path).index
    assert index.search("") == []
    assert index.search("zzzz") == []


def test_snippet_escapes_html(tmp_path):
    write_param(tmp_path, "r", body="a <b>rank</b> thing")
    hit = load_library(tmp_path).index.search("rank")[0]
    assert "<b>" not in hit.snippet_html
