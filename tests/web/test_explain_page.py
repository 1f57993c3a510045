"""/explain: paste or upload an adapter_config.json; no JavaScript needed; errors inline with 422."""

from __future__ import annotations

import json

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


def test_invalid_json_is_a_422_inline(client):
    response = client.post("/explain", data={"adapter_config": "{nope"})
    assert response.status_code == 422
    assert "not valid JSON" in response.text


def test_htmx_gets_the_explanation_block(client):
    response = client.post("/explain", data={"adapter_config": json.dumps(ADAPTER)}, headers={"HX-Request": "true"})
    assert response.text.lstrip().startswith('<section id="explanation"')
