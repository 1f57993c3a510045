"""Loading content: a bad file stops start-up with the file, the field and the reason."""

from pathlib import Path

import pytest

from app.content.library import ContentError, load_library

PARAM = """---
title: "{title}"
slug: {slug}
field: {slug}
owner: LoraConfig
kind: lora
type: int
default: 8
default_source: "peft"
summary: "A summary that is long enough to pass validation."
related: {related}
references:
  - {{title: "LoRA paper", arxiv: "2106.09685"}}
recommendations:
  - {{value: "8", source: "LoRA paper", arxiv: "2106.09685", checked: 2026-11-28}}
---
## What it is

{body}

## How it works

## Raising it

## Lowering it

## Recommended values

## Interactions

## Pitfalls
"""


def write_param(root: Path, slug: str, related: str = "[]", body: str = "Text.", title: str = "A title") -> Path:
    (root / "params").mkdir(parents=True, exist_ok=True)
    (root / "guides").mkdir(parents=True, exist_ok=True)
    path = root / "params" / f"{slug}.md"
    path.write_text(PARAM.format(slug=slug, related=related, body=body, title=title))
    return path


def test_loads_pages_backlinks_and_groups(tmp_path):
    write_param(tmp_path, "r", body="See [lora_alpha](/params/lora_alpha).")
    write_param(tmp_path, "lora_alpha", related="[r]")
    library = load_library(tmp_path)
    assert set(library.params) == {"r", "lora_alpha"}
    assert [page.slug for page in library.backlinks["/params/lora_alpha"]] == ["r"]
    assert library.params_by_kind()[0][0] == "lora"


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda text: text.replace("kind: lora", "kind: nonsense"), "kind", "Input should be"),
        (lambda text: text.replace("summary: \"A summary that is long enough to pass validation.\"", "summary: short"), "summary", "at least 20"),
        (lambda text: text.replace("slug: r\n", "slug: other\n"), "slug", "must equal the file name"),
        (lambda text: text.replace("default_source: \"peft\"\n", ""), "front matter", "default_source is required"),
        (lambda text: text.replace("title:", "title: [unclosed"), "front matter", "invalid YAML"),
        (lambda text: text.replace("owner: LoraConfig", "owner: LoraConfig\nsurprise: 1"), "surprise", "Extra inputs"),
        (lambda text: text.replace("arxiv: \"2106.09685\"", "arxiv: \"not-an-id\"", 1), "references.0.arxiv", "pattern"),
        (lambda text: text.replace(", checked: 2026-11-28", ""), "recommendations.0.checked", "Field required"),
        (lambda text: text.replace('source: "LoRA paper", arxiv: "2106.09685",', 'source: "LoRA paper",'), "recommendations.0", "needs a url or an arxiv id"),
        (lambda text: text.replace("## Lowering it", "## Lowering"), "body", "needs the sections"),
        (lambda text: text.replace("type: int", "type: bool"), "body", "'## Turning it on'"),
    ],
)
def test_bad_front_matter_names_file_field_and_reason(tmp_path, mutate, field, reason):
    path = write_param(tmp_path, "r")
    path.write_text(mutate(path.read_text()))
    with pytest.raises(ContentError) as raised:
        load_library(tmp_path)
    assert raised.value.path == path
    assert raised.value.field_name == field
    assert reason in raised.value.reason


def test_related_slug_must_exist(tmp_path):
    write_param(tmp_path, "r", related="[missing_page]")
    with pytest.raises(ContentError, match="no parameter page has slug 'missing_page'"):
        load_library(tmp_path)


def test_broken_internal_link_stops_loading(tmp_path):
    write_param(tmp_path, "r", body="See [x](/params/not_there#a).")
    with pytest.raises(ContentError, match="/params/not_there points to no page"):
        load_library(tmp_path)


def test_suggest_finds_close_slugs_and_aliases(tmp_path):
    write_param(tmp_path, "lora_alpha")
    write_param(tmp_path, "lora_dropout")
    library = load_library(tmp_path)
    assert library.suggest("lora_alph")[0].slug == "lora_alpha"
    assert library.suggest("dropout")[0].slug == "lora_dropout"


def test_a_slug_with_capitals_or_spaces_is_refused(tmp_path):
    path = write_param(tmp_path, "r")
    path.write_text(path.read_text().replace("slug: r\n", "slug: Bad Slug\n"))
    with pytest.raises(ContentError, match="must be lowercase letters"):
        load_library(tmp_path)


def test_a_renamed_section_keeps_its_old_anchor(tmp_path):
    path = write_param(tmp_path, "use_rslora")
    text = path.read_text().replace("type: int", "type: bool")
    path.write_text(text.replace("## Raising it", "## Turning it on").replace("## Lowering it", "## Turning it off"))
    page = load_library(tmp_path).params["use_rslora"]
    assert [s.anchor for s in page.sections if s.level == 2][2:4] == ["turning-it-on", "turning-it-off"]
    assert '<span id="raising-it" class="anchor-alias"></span><h2 id="turning-it-on">' in page.html
    assert '<span id="lowering-it" class="anchor-alias"></span><h2 id="turning-it-off">' in page.html
