"""/calculator: works without JavaScript, the URL holds the state, htmx gets the results block, errors inline."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

HTMX = {"HX-Request": "true"}


def trainable(html: str) -> int:
    return int(re.search(r'id="trainable-params" data-value="(\d+)"', html).group(1))


def test_default_page_renders_a_result(client):
    response = client.get("/calculator")
    assert response.status_code == 200
    assert trainable(response.text) > 0
    assert '<form id="calc-form"' in response.text and 'method="get"' in response.text


def test_the_query_string_reproduces_the_view(client):
    url = "/calculator?model=llama-3.1-8b&r=16&lora_alpha=32&target_modules=all-linear&base_dtype=nf4"
    first, second = client.get(url).text, client.get(url).text
    assert trainable(first) == trainable(second) == 41_943_040
    assert 'value="all-linear"' in first and '<option value="nf4" selected>' in first


def test_htmx_gets_only_the_results_block(client):
    response = client.get("/calculator?model=gpt2&r=4", headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="calc-results"')
    assert "<form" not in response.text
    assert trainable(response.text) == 12 * 4 * (768 + 2304)


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [("r=0", "r", "at least 1"), ("r=1.5", "r", "whole number"), ("lora_dropout=1", "lora_dropout", "less than 1"),
     ("target_modules=nope", "target_modules", "match no module"), ("model=custom&model_config=%7B", "model_config", "not valid JSON"),
     ("lora_alpha=" + "9" * 400, "lora_alpha", "beyond the range of a float"),
     ("alpha_pattern=q_proj%3D" + "9" * 400, "alpha_pattern", "beyond the range of a float"),
     ("learning_rate=" + "9" * 400, "learning_rate", "beyond the range of a float"),
     ("model=custom&model_config=" + quote('{"model_type": ["llama"]}'), "model_config", "model_type must be a string"),
     ("model=custom&model_config=" + quote('{"model_type": {"a": 1}}'), "model_config", "model_type must be a string"),
     ("model=custom&model_config=" + "%5B" * 5000, "model_config", "nested too deeply"),
     ("model=custom&model_config=" + quote('{"model_type": "gpt2", "n_embd": 64, "n_layer": ' + "9" * 13 + "}"), "model_config", "deeper than any")],
)
def test_bad_fields_answer_422_inline(client, query, field, words):
    response = client.get(f"/calculator?{query}")
    assert response.status_code == 422
    assert re.search(rf'<span id="err-{field}" class="field-error"[^>]*>[^<]*{re.escape(words)}', response.text)
    assert 'id="trainable-params"' not in response.text
    partial = client.get(f"/calculator?{query}", headers=HTMX)
    assert partial.status_code == 422
    assert f'id="err-{field}" class="field-error" role="alert" hx-swap-oob="true"' in partial.text


def test_labels_link_to_their_pages(client):
    html = client.get("/calculator").text
    for slug in ("r", "lora_alpha", "target_modules", "use_dora", "gradient_checkpointing", "optim"):
        assert f'href="/params/{slug}"' in html


@pytest.mark.parametrize(("focus", "field"), [("r", "r"), ("optim", "optim"), ("q_proj", "target_modules"), ("rank_pattern", "rank_pattern")])
def test_try_it_focus(client, focus, field):
    html = client.get(f"/calculator?focus={focus}").text
    assert f'class="form-field focused" id="field-{field}"' in html
    assert re.search(rf'id="f-{field}"[^>]*autofocus', html)


def test_exports_and_copy_controls(client):
    html = client.get("/calculator?model=qwen2.5-0.5b&r=16&target_modules=q_proj,v_proj").text
    for key in ("peft", "adapter_config", "unsloth", "axolotl", "llama_factory"):
        assert f'id="export-{key}"' in html and f'data-copy-target="export-{key}"' in html
    assert "data-copy-link" in html
    assert "LoraConfig(" in html


def test_memory_breakdown_and_lints_are_shown(client):
    html = client.get("/calculator?model=llama-3.1-8b&r=16&lora_alpha=8&target_modules=q_proj").text
    assert "Memory per device" in html and "Activations" in html and "Optimizer states" in html
    assert "lora_alpha (8) is below r (16)" in html


def test_job_link_for_trainable_models(client):
    assert "/jobs/new?" in client.get("/calculator?model=tiny-llama&r=4").text
    assert "/jobs/new?" not in client.get("/calculator?model=llama-3.1-70b&r=4").text


def test_every_try_it_link_to_the_calculator_focuses_a_field(app):
    from app.content.links import try_it_url
    from app.web.routers.calculator import focused_field

    unmapped = [
        slug for slug, page in app.state.library.params.items()
        if (try_it_url(slug, page.meta.kind) or "").startswith("/calculator") and focused_field(slug) is None
    ]
    assert unmapped == []


def test_every_training_pages_try_it_opens_a_form_that_has_its_field(app):
    from app.content.links import try_it_url
    from app.web.forms import CALCULATOR_FIELD_NAMES, JOB_FIELD_NAMES

    for page in app.state.library.params.values():
        if page.meta.kind == "training" and page.slug in CALCULATOR_FIELD_NAMES | JOB_FIELD_NAMES:
            url = try_it_url(page.slug, page.meta.kind) or ""
            assert page.slug in (CALCULATOR_FIELD_NAMES if url.startswith("/calculator") else JOB_FIELD_NAMES), page.slug


def test_the_pinned_summary_swaps_with_the_results(client):
    fragment = client.get("/calculator?model=tiny-llama&r=4&target_modules=q_proj", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="calc-results"')
    summary = fragment.split('id="calc-summary"', 1)[1].split("</p>", 1)[0]
    assert "<strong>1.02K</strong> trainable" in summary  # 2 layers x 4 x (64 + 64) = 1,024
    assert "scaling <strong>2</strong>" in summary  # lora_alpha defaults to 8: 8 / 4
    warned = client.get("/calculator?model=tiny-llama&r=16&lora_alpha=4", headers={"HX-Request": "true"}).text
    assert "warning" in warned.split('id="calc-summary"', 1)[1].split("</p>", 1)[0]
