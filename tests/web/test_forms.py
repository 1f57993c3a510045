"""The form builder: form text through the spec models (calculator and job form), errors on the field, never an exception."""

from __future__ import annotations

import pytest

from app.calc.catalogue import load_catalogue
from app.calc.request import calculator_query
from app.spec import LoraSpec
from app.spec.base import as_text
from app.web.forms import CALCULATOR_FIELDS, JOB_FIELDS, calculator_form, job_form, prefill
from tests.calc.peft_oracle import TREES

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(
    ("params", "lora"),
    [
        ({"target_modules": "q_proj, v_proj"}, {"target_modules": ["q_proj", "v_proj"]}),
        ({"target_modules": "q_proj v_proj"}, {"target_modules": ["q_proj", "v_proj"]}),
        ({"target_modules": "All-Linear"}, {"target_modules": "all-linear"}),
        ({"target_modules": r".*\.(q|v)_proj"}, {"target_modules": r".*\.(q|v)_proj"}),
        ({"target_modules": ""}, {}),
        ({"target_modules": '["model.layers.0.self_attn.q_proj"]'}, {"target_modules": ["model.layers.0.self_attn.q_proj"]}),
        ({"use_dora": "true", "use_rslora": "on"}, {"use_dora": True, "use_rslora": True}),
        ({"rank_pattern": "q_proj=4, down_proj=8"}, {"rank_pattern": {"q_proj": 4, "down_proj": 8}}),
        ({"alpha_pattern": '{"q_proj": 16}'}, {"alpha_pattern": {"q_proj": 16}}),
        ({"layers_to_transform": "0, 2"}, {"layers_to_transform": [0, 2]}),
        ({"init_lora_weights": "false"}, {"init_lora_weights": False}),
        ({"lora_dropout": "0.05", "r": "16"}, {"lora_dropout": 0.05, "r": 16}),
    ],
)
def test_parse(params, lora):
    outcome = calculator_form(params, CATALOGUE, TREES)
    assert outcome.errors == {}
    assert outcome.request.lora.model_dump(exclude_defaults=True) == lora


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"r": "1.5"}, "r", "whole number"),
        ({"r": "0"}, "r", "at least 1"),
        ({"r": "abc"}, "r", "whole number"),
        ({"lora_alpha": "-1"}, "lora_alpha", "greater than 0"),
        ({"lora_dropout": "nan"}, "lora_dropout", "finite number"),
        ({"target_modules": "nothing_here"}, "target_modules", "match no module"),
        ({"rank_pattern": "q_proj:4"}, "rank_pattern", "key=value"),
        ({"model": "custom", "model_config": "{"}, "model_config", "not valid JSON"),
        ({"model": "custom", "model_config": '{"model_type": "t5x"}'}, "model_config", "not known to transformers"),
        ({"model": "nope"}, "model", "no catalogue model"),
        ({"per_device_train_batch_size": "0"}, "per_device_train_batch_size", "at least 1"),
        ({"base_dtype": "int4"}, "base_dtype", "must be one of"),
        ({"lora_alpha": "9" * 400}, "lora_alpha", "beyond the range of a float"),
        ({"alpha_pattern": "q_proj=" + "9" * 400}, "alpha_pattern", "beyond the range of a float"),
        ({"learning_rate": "9" * 400}, "learning_rate", "beyond the range of a float"),
        ({"model": "custom", "model_config": '{"model_type": ["llama"]}'}, "model_config", "model_type must be a string"),
        ({"model": "custom", "model_config": '{"model_type": {"a": 1}}'}, "model_config", "model_type must be a string"),
        ({"model": "custom", "model_config": "[" * 100_000}, "model_config", "nested too deeply"),
        ({"model": "custom", "model_config": '{"n_embd": ' + "9" * 5000 + "}"}, "model_config", "number too long"),
        ({"alpha_pattern": '{"q_proj": ' + "[" * 100_000}, "alpha_pattern", "nested too deeply"),
    ],
)
def test_errors_land_on_the_field(params, field, words):
    outcome = calculator_form(params, CATALOGUE, TREES)
    assert outcome.result is None
    assert words in outcome.errors[field]


def test_several_errors_at_once():
    outcome = calculator_form({"r": "x", "lora_alpha": "-2"}, CATALOGUE, TREES)
    assert set(outcome.errors) == {"r", "lora_alpha"}


def test_round_trip_through_the_query_string():
    params = {"model": "gpt2", "r": "32", "lora_alpha": "64", "target_modules": "c_attn, c_fc", "use_dora": "true",
              "rank_pattern": "c_fc=8", "gradient_checkpointing": "true", "devices": "4"}
    first = calculator_form(params, CATALOGUE, TREES)
    query = calculator_query(first.request.lora, first.request.training, model="gpt2")
    second = calculator_form(query, CATALOGUE, TREES)
    assert second.result == first.result


def test_every_field_has_a_unique_name():
    for fields in (CALCULATOR_FIELDS, JOB_FIELDS):
        names = [field.name for field in fields]
        assert len(names) == len(set(names))


def test_the_job_form_has_an_input_per_lora_and_training_field():
    assert [field.name for field in JOB_FIELDS if field.group == "lora"] == list(LoraSpec.model_fields)


def test_the_url_query_prefills_known_fields_only():
    values = prefill(JOB_FIELDS, {"r": "16", "learning_rate": "0.001", "model": "smollm2-135m-instruct", "nonsense": "x"}, ("model",))
    assert (values["r"], values["learning_rate"], values["model"]) == ("16", "0.001", "smollm2-135m-instruct")
    assert values["lora_alpha"] == "8" and "nonsense" not in values


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("r", "16", 16),
        ("lora_alpha", "16", 16),
        ("lora_alpha", "0.5", 0.5),
        ("target_modules", "q_proj, v_proj", ["q_proj", "v_proj"]),
        ("target_modules", "all-linear", "all-linear"),
        ("target_modules", r".*\.(q|v)_proj", r".*\.(q|v)_proj"),
        ("layers_to_transform", "0, 1", [0, 1]),
        ("rank_pattern", '{"q_proj": 4}', {"q_proj": 4}),
        ("init_lora_weights", "false", False),
        ("init_lora_weights", "gaussian", "gaussian"),
        ("use_dora", "true", True),
        ("learning_rate", "1e-4", 1e-4),
    ],
)
def test_job_form_strings_become_typed_values(name, text, expected):
    request = job_form({"model": "tiny-llama", "dataset": "addition", name: text}).request
    group = request.lora if name in LoraSpec.model_fields else request.training
    assert getattr(group, name) == expected


def test_an_unticked_box_is_false_and_an_empty_optional_number_is_none():
    request = job_form({"model": "tiny-llama", "dataset": "addition", "use_rslora": "false", "eval_steps": ""}).request
    assert request.lora.use_rslora is False and request.training.eval_steps is None


def test_pasted_jsonl_replaces_the_chosen_dataset():
    request = job_form({"model": "tiny-llama", "dataset": "addition", "dataset_jsonl": '{"prompt": "a", "response": "b"}'}).request
    assert (request.dataset, request.dataset_jsonl) == (None, '{"prompt": "a", "response": "b"}')


def test_each_bad_job_field_gets_its_own_message():
    outcome = job_form({"model": "tiny-llama", "dataset": "addition", "r": "eight", "max_steps": "1.5"})
    assert set(outcome.errors) == {"r", "max_steps"}
    outcome = job_form({"model": "tiny-llama", "dataset": "addition", "lora_dropout": "1.0", "rank_pattern": "{bad"})
    assert set(outcome.errors) == {"rank_pattern", "lora_dropout"}, "an unreadable field hides no other error"
    outcome = job_form({"model": "tiny-llama", "dataset": "addition", "r": "0", "learning_rate": "abc", "max_steps": "0"})
    assert set(outcome.errors) == {"r", "learning_rate", "max_steps"}
    assert "must be a number" in outcome.errors["learning_rate"]


def test_a_stored_config_round_trips_through_the_run_again_link():
    original = job_form({"model": "tiny-llama", "dataset": "addition", "r": "4", "target_modules": "q_proj, k_proj", "max_steps": "7"}).request
    again = job_form({"model": "tiny-llama", "dataset": "addition", **as_text(original.lora), **as_text(original.training)}).request
    assert again == original
