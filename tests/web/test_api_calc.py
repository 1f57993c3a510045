"""POST /api/calc, GET /api/models, POST /api/explain: answers, and a 422 naming the field for bad input."""

from __future__ import annotations

import shutil

import pytest

from app.calc.catalogue import CatalogueError
from app.main import create_app
from app.settings import PROJECT_ROOT, Settings

BASE = {"model": "smollm2-135m-instruct", "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}}
GPT2_LIKE = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 128, "n_positions": 64}
HUGE = 10**400  # a valid JSON number no float can hold


def assert_422_names_the_field(response, loc, words):
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert words in detail["msg"]


def test_calc_answers_with_the_documented_fields(client):
    response = client.post("/api/calc", json={**BASE, "training": {"per_device_train_batch_size": 2, "base_dtype": "nf4"}})
    assert response.status_code == 200
    body = response.json()
    assert body["trainable_params"] == 30 * 8 * ((576 + 576) + (576 + 192))
    assert {"base_params", "trainable_percent", "modules", "memory", "lints", "scaling", "adapter_file_bytes"} <= set(body)
    assert set(body["modules"][0]) >= {"name", "in_features", "out_features", "count", "r", "alpha", "scaling", "params"}
    assert body["memory"]["total_bytes"] == sum(part["bytes"] for part in body["memory"]["components"])


def test_a_pasted_encoder_counts_its_classifier_head(client):
    config = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "architectures": ["BertForSequenceClassification"]}
    body = client.post("/api/calc", json={"model_config": config, "lora": {
        "r": 4, "target_modules": ["query", "value"], "task_type": "SEQ_CLS"}}).json()
    assert body["model"]["family"] == "BertForSequenceClassification"
    assert body["saved_modules"] == [{"name": "classifier", "params": 32 * 2 + 2}]
    assert body["trainable_params"] == 2 * 2 * 4 * (32 + 32) + 66


def test_calc_with_a_pasted_config(client):
    config = client.get("/api/models/gpt2").json()["config"]
    response = client.post("/api/calc", json={"model_config": config, "lora": {"r": 8, "target_modules": "all-linear"}})
    assert response.json()["trainable_params"] == 1_179_648


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({**BASE, "lora": {"r": 0}}, ["body", "lora", "r"], "at least 1"),
        ({**BASE, "lora": {"r": -1}}, ["body", "lora", "r"], "at least 1"),
        ({**BASE, "lora": {"r": 1.5}}, ["body", "lora", "r"], "whole number"),
        ({**BASE, "lora": {"r": "8"}}, ["body", "lora", "r"], "whole number, got '8'"),
        ({**BASE, "lora": {"r": 10**9}}, ["body", "lora", "r"], "at most 65,536"),
        ({**BASE, "lora": {"lora_alpha": -16}}, ["body", "lora", "lora_alpha"], "greater than 0"),
        ({**BASE, "lora": {"lora_dropout": 1.0}}, ["body", "lora", "lora_dropout"], "less than 1"),
        ({**BASE, "lora": {"target_modules": ["no_such_module"]}}, ["body", "lora", "target_modules"], "match no module"),
        ({"model_config": {"model_type": "bert_9000", "hidden_size": 768}}, ["body", "model_config", "model_type"],
         "not known to transformers"),
        ({"model": "gpt-17"}, ["body", "model"], "no catalogue model"),
        ({**BASE, "lora": {"lora_bias": True, "use_dora": True}}, ["body", "lora", "lora_bias"], "DoRA"),
        ({**BASE, "lora": {"rank": 8}}, ["body", "lora", "rank"], "not a field here"),
        ({**BASE, "lora": {"lora_alpha": HUGE}}, ["body", "lora", "lora_alpha"], "beyond the range of a float"),
        ({**BASE, "lora": {"alpha_pattern": {"q_proj": HUGE}}}, ["body", "lora", "alpha_pattern"], "beyond the range of a float"),
        ({**BASE, "lora": {"lora_dropout": HUGE}}, ["body", "lora", "lora_dropout"], "beyond the range of a float"),
        ({**BASE, "training": {"learning_rate": HUGE}}, ["body", "training", "learning_rate"], "beyond the range of a float"),
        ({"model_config": {"model_type": ["llama"]}}, ["body", "model_config", "model_type"], "must be a string"),
        ({"model_config": {"model_type": {"llama": 1}}}, ["body", "model_config", "model_type"], "must be a string"),
        ({"model_config": {**GPT2_LIKE, "n_layer": 10**12}}, ["body", "model_config", "n_layer"], "deeper than any"),
        ({"model_config": {**GPT2_LIKE, "n_embd": "64"}}, ["body", "model_config", "n_embd"], "expected int, got str"),
        ({"model_config": {**GPT2_LIKE, "n_embd": 0}}, ["body", "model_config"], "transformers cannot build gpt2"),
        ({"model_config": {**GPT2_LIKE, "n_head": True}}, ["body", "model_config", "n_head"], "expected int, got bool"),
        ({"model_config": {**GPT2_LIKE, "model_type": "t5"}, "lora": {"task_type": "CAUSAL_LM"}},
         ["body", "model_config", "model_type"], "no AutoModelForCausalLM for model_type 't5'"),
    ],
)
def test_bad_input_gets_422_naming_the_field(client, body, loc, words):
    assert_422_names_the_field(client.post("/api/calc", json=body), loc, words)


def test_nan_dropout_is_a_422_not_a_500(client):
    response = client.post("/api/calc", content=b'{"model": "gpt2", "lora": {"lora_dropout": NaN}}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "lora", "lora_dropout"]


def test_invalid_json_is_a_422(client):
    response = client.post("/api/calc", content=b'{"model": "gpt2",', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_body_over_the_limit_is_a_413(client, settings):
    padding = "x" * (settings.max_body_bytes + 1)
    response = client.post("/api/calc", content=f'{{"model": "{padding}"}}'.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"][0]["msg"]


def test_models(client):
    models = client.get("/api/models").json()
    assert {"llama-3.1-70b", "mixtral-8x7b", "gpt2", "tiny-llama"} <= {model["id"] for model in models}
    detail = client.get("/api/models/phi-3-mini").json()
    assert detail["config"]["model_type"] == "phi3"
    assert client.get("/api/models/none-such").status_code == 404


def test_explain_plain_and_wrapped(client):
    adapter = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["c_attn"], "base_model_name_or_path": "gpt2"}
    plain = client.post("/api/explain", json=adapter).json()
    assert plain["result"]["trainable_params"] == 12 * 16 * (768 + 2304)
    config = client.get("/api/models/gpt2").json()["config"]
    wrapped = client.post("/api/explain", json={"adapter_config": {**adapter, "base_model_name_or_path": "x/y"}, "model_config": config}).json()
    assert wrapped["result"]["trainable_params"] == plain["result"]["trainable_params"]


def test_explain_bad_input(client):
    assert client.post("/api/explain", json=[1, 2]).status_code == 422
    response = client.post("/api/explain", json={"adapter_config": {"r": 8}, "model_config": "nope"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"peft_type": "LORA", "base_model_name_or_path": ["gpt2"]}, ["body", "adapter_config", "base_model_name_or_path"],
         "must be a string"),
        ({"peft_type": "LORA", "base_model_name_or_path": {"id": "gpt2"}}, ["body", "adapter_config", "base_model_name_or_path"],
         "must be a string"),
        ({"peft_type": "LORA", "base_model_name_or_path": 7}, ["body", "adapter_config", "base_model_name_or_path"], "got 7"),
        # the pasted config.json is the caller's input, not part of the adapter being explained
        ({"adapter_config": {"r": 8}, "model_config": {"model_type": ["llama"]}}, ["body", "model_config", "model_type"],
         "model_type must be a string"),
        ({"adapter_config": {"r": 8}, "model_config": {"model_type": "bogus"}}, ["body", "model_config", "model_type"],
         "not known to transformers"),
        ({"adapter_config": {"r": 8}, "model_config": {"model_type": "llama", "hidden_size": [1]}},
         ["body", "model_config", "hidden_size"], "expected int"),
    ],
)
def test_explain_bad_field_gets_422_naming_it(client, body, loc, words):
    assert_422_names_the_field(client.post("/api/explain", json=body), loc, words)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"peft_type": "LORA", "lora_alpha": HUGE, "base_model_name_or_path": "gpt2"}, "beyond the range of a float"),
        ({"peft_type": "LORA", "r": 8, "target_modules": ["no_such_module"], "base_model_name_or_path": "gpt2"}, "no_such_module"),
    ],
)
def test_explain_reports_bad_values_as_problems(client, body, words):
    response = client.post("/api/explain", json=body)
    assert response.status_code == 200
    assert any(words in problem for problem in response.json()["problems"])


def test_openapi_documents_the_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/calc", "/api/models", "/api/models/{model_id}", "/api/explain"} <= set(paths)
    assert "422" in paths["/api/calc"]["post"]["responses"]


def test_the_catalogue_is_loaded_at_start_up(app):
    assert "gpt2" in app.state.catalogue.ids


@pytest.mark.parametrize(
    ("file", "text", "words"),
    [
        ("gpt2.json", '{"model_type": "gpt2",', "gpt2.json: is not valid JSON"),
        ("gpt2.json", '{"model_type": ["gpt2"]}', "gpt2.json: model_type \\[.gpt2.\\] differs from its tree"),
        ("catalogue.yaml", "- id: gpt2\n  name: [unclosed\n", "catalogue.yaml: is not valid YAML"),
    ],
)
def test_a_bad_catalogue_file_stops_start_up(tmp_path, file, text, words):
    content = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", content)
    (content / "models" / file).write_text(text)
    with pytest.raises(CatalogueError, match=words):
        create_app(Settings(content_dir=content, var_dir=tmp_path / "var"))


def test_cuda_only_memory_rules_say_they_are_not_measured_on_a_gpu(client):
    cuda = client.post("/api/calc", json={**BASE, "training": {"base_dtype": "bf16"}}).json()["memory"]["components"]
    cpu = client.post("/api/calc", json={**BASE, "training": {"base_dtype": "fp32"}}).json()["memory"]["components"]
    context = next(part for part in cuda if part["key"] == "context")
    assert any("CUDA context" in rule for rule in context["not_measured_on_gpu"])
    assert all(part["not_measured_on_gpu"] == [] for part in cpu)
    page = client.get("/calculator?model=smollm2-135m-instruct&r=8&base_dtype=bf16").text
    assert page.count("Not measured on a GPU yet") == 3  # activations, allocator reserve and CUDA context rows
    assert "Not measured on a GPU yet" not in client.get("/calculator?model=smollm2-135m-instruct&r=8&base_dtype=fp32").text
