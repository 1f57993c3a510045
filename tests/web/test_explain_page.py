"""/explain: paste or upload an adapter_config.json; no JavaScript needed; errors inline with 422."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ADAPTER = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
           "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "lora_dropout": 0.05}


def test_form_page(client):
    html = client.get("/explain").text
    assert 'method="post"' in html and 'enctype="multipart/form-data"' in html and 'type="file"' in html


def test_pasted_config_is_explained(client):
    response = client.post("/explain", data={"adapter_config": json.dumps(ADAPTER)})
    assert response.status_code == 200
    assert f"{30 * 8 * ((576 + 576) + (576 + 192)):,}" in response.text
    assert 'href="/params/lora_dropout"' in response.text
    assert "Open in calculator" in response.text and "/calculator?model=smollm2-135m-instruct" in response.text


def test_uploaded_file_is_explained(client):
    response = client.post("/explain", files={"adapter_file": ("adapter_config.json", json.dumps(ADAPTER).encode(), "application/json")})
    assert response.status_code == 200
    assert 'id="explain-trainable"' in response.text


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"adapter_config": "{nope"}, "adapter_config", "not valid JSON"),
        ({"adapter_config": "[" * 5000}, "adapter_config", "nested too deeply"),
        ({"adapter_config": '{"r": ' + "9" * 5000 + "}"}, "adapter_config", "number too long"),
        ({"adapter_config": json.dumps({**ADAPTER, "base_model_name_or_path": ["gpt2"]})}, "adapter_config", "must be a string"),
        ({"adapter_config": json.dumps(ADAPTER), "model_config": "[" * 5000}, "model_config", "nested too deeply"),
        ({"adapter_config": json.dumps(ADAPTER), "model_config": '{"model_type": ["llama"]}'}, "model_config", "model_type must be a string"),
        ({"adapter_config": json.dumps(ADAPTER), "model_config": '{"model_type": "bogus"}'}, "model_config", "not known to transformers"),
    ],
)
def test_invalid_input_is_a_422_inline(client, data, field, words):
    response = client.post("/explain", data=data)
    assert response.status_code == 422
    assert re.search(rf'<span id="err-{field}" class="field-error"[^>]*>[^<]*{re.escape(words)}', response.text)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"adapter_config": json.dumps(ADAPTER).replace('"lora_alpha": 16', '"lora_alpha": ' + "9" * 400)},
         "beyond the range of a float"),
    ],
)
def test_bad_values_are_listed_as_problems(client, data, words):
    response = client.post("/explain", data=data)
    assert response.status_code == 200
    assert words in response.text


def test_display_helpers_are_jinja_filters(client):
    from app.web.routers import calculator, explain
    from app.web.templating import templates

    assert templates.env.filters["human_bytes"](1536) == "1.50 KiB"
    assert templates.env.filters["short_count"](1_234_567) == "1.23M"
    assert not hasattr(explain, "human_bytes") and not hasattr(calculator, "human_bytes")
    html = client.post("/explain", data={"adapter_config": json.dumps(ADAPTER)}).text
    assert re.search(r'Adapter file</span><strong>[\d.,]+ (KiB|MiB)</strong>', html)


def test_htmx_gets_the_explanation_block(client):
    response = client.post("/explain", data={"adapter_config": json.dumps(ADAPTER)}, headers={"HX-Request": "true"})
    assert response.text.lstrip().startswith('<section id="explanation"')


def test_another_tools_yaml_is_translated_not_fine(client):
    text = (Path(__file__).parents[1] / "calc" / "dialect_examples" / "axolotl_llama3_lora_1b.yml").read_text()
    page = client.post("/explain", data={"adapter_config": text, "model_config": ""})
    assert page.status_code == 200
    assert "This Axolotl config, in peft" in page.text
    api = client.post("/api/explain", json={"adapter_config": text}).json()
    assert api["translated"]["lora"]["r"] == 16
    assert api["translated"]["training"]["optim"] == "adamw_8bit"


def test_a_non_adapter_file_is_refused_with_what_it_is(client):
    response = client.post("/api/explain", json={"model_type": "llama", "hidden_size": 64, "architectures": ["LlamaForCausalLM"]})
    assert response.status_code == 422
    assert "model's config.json" in response.json()["detail"][0]["msg"]
