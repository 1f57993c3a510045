"""The newer catalogue models through the web: the picker, GET /api/models, the calculator page and /explain, no 500s."""

from __future__ import annotations

import re

import pytest

from app.calc.catalogue import load_catalogue

NEW_MODELS = ["gemma-3-1b-it", "gemma-3-4b-it", "qwen3-8b", "qwen3-30b-a3b", "gpt-oss-20b", "olmo-2-7b",
              "deepseek-v2-lite", "bert-base-uncased", "flan-t5-base"]
HTMX = {"HX-Request": "true"}


def test_picker_and_api_list_them_with_their_source(client):
    page = client.get("/calculator").text
    listed = {model["id"]: model for model in client.get("/api/models").json()}
    for model_id in NEW_MODELS:
        assert f'<option value="{model_id}"' in page
        assert listed[model_id]["source"].startswith("https://huggingface.co/")
        assert listed[model_id]["trainable"] is False  # no `weights:`: jobs cannot pick them by accident
        assert client.get(f"/api/models/{model_id}").json()["config"] == load_catalogue().get(model_id).config


@pytest.mark.parametrize("model_id", NEW_MODELS)
@pytest.mark.parametrize("query", ["r=16&lora_alpha=32&target_modules=all-linear", "r=8", "r=64&target_modules=q_proj&base_dtype=nf4"])
def test_calculator_answers_every_new_model(client, model_id, query):
    response = client.get(f"/calculator?model={model_id}&{query}", headers=HTMX)
    assert response.status_code in (200, 422), response.text[:300]
    if response.status_code == 422:  # no default targets for this model type: the field says why
        assert "target_modules" in response.text
        return
    assert int(re.search(r'id="trainable-params" data-value="(\d+)"', response.text).group(1)) > 0


@pytest.mark.parametrize(("model_id", "task_type"), [("bert-base-uncased", "SEQ_CLS"), ("flan-t5-base", "SEQ_2_SEQ_LM")])
def test_encoder_and_seq2seq_memory_says_approximate(client, model_id, task_type):
    result = client.post("/api/calc", json={"model": model_id, "lora": {"r": 8, "task_type": task_type}}).json()
    assert any(text.startswith("Approximate for this") for text in result["memory"]["assumptions"])
    assert result["memory"]["approximate"].startswith("Approximate for this")
    decoder = client.post("/api/calc", json={"model": "qwen3-8b", "lora": {"r": 8}}).json()
    assert not any(text.startswith("Approximate for this") for text in decoder["memory"]["assumptions"])
    assert decoder["memory"]["approximate"] == ""
    page = client.get(f"/calculator?model={model_id}&r=8&task_type={task_type}", headers=HTMX).text
    assert 'id="memory-approximate"' in page
    assert 'id="memory-approximate"' not in client.get("/calculator?model=qwen3-8b&r=8", headers=HTMX).text


def test_vision_tower_lint_shows_its_source_on_the_page(client):
    response = client.get("/calculator?model=gemma-3-4b-it&r=32&target_modules=all-linear", headers=HTMX)
    assert response.status_code == 200
    assert "modules of the vision tower are adapted" in response.text
    assert 'class="lint-source">Source: peft 0.21.2 tuners/tuners_utils.py' in response.text


def test_explain_recognises_a_gemma3_adapter(client):
    adapter = {"peft_type": "LORA", "r": 32, "lora_alpha": 32, "target_modules": "all-linear",
               "base_model_name_or_path": "google/gemma-3-4b-it", "task_type": "CAUSAL_LM"}
    result = client.post("/api/explain", json=adapter).json()
    codes = {lint["code"] for lint in result["result"]["lints"]}
    assert {"vision_tower_adapted", "vllm_vision_tower", "vllm_max_lora_rank"} <= codes


def test_unset_task_type_on_a_classifier_warns_the_head_stays_frozen(client):
    plain = client.post("/api/calc", json={"model": "bert-base-uncased", "lora": {"r": 8, "target_modules": ["query"]}}).json()
    cls = client.post("/api/calc", json={"model": "bert-base-uncased",
                                         "lora": {"r": 8, "target_modules": ["query"], "task_type": "SEQ_CLS"}}).json()
    assert "task_head_frozen" in {lint["code"] for lint in plain["lints"]}
    assert "task_head_frozen" not in {lint["code"] for lint in cls["lints"]}
    assert cls["trainable_params"] - plain["trainable_params"] == 768 * 2 + 2  # the classifier head, saved in full
