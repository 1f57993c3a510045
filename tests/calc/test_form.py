"""The calculator form: query string to request and back, errors on the field, never an exception."""

from __future__ import annotations

import pytest

from app.calc.catalogue import load_catalogue
from app.calc.form import FIELDS, calculate, parse_query, to_query

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
    request, errors, _ = parse_query(params)
    assert errors == {}
    assert request["lora"] == lora


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"r": "1.5"}, "r", "whole number"),
        ({"r": "0"}, "r", "at least 1"),
        ({"r": "abc"}, "r", "whole number"),
        ({"lora_alpha": "-1"}, "lora_alpha", "above 0"),
        ({"lora_dropout": "nan"}, "lora_dropout", "probability"),
        ({"target_modules": "nothing_here"}, "target_modules", "match no module"),
        ({"rank_pattern": "q_proj:4"}, "rank_pattern", "key=value"),
        ({"model": "custom", "model_config": "{"}, "model_config", "not valid JSON"),
        ({"model": "custom", "model_config": '{"model_type": "t5"}'}, "model_config", "not supported"),
        ({"model": "nope"}, "model", "no catalogue model"),
        ({"per_device_train_batch_size": "0"}, "per_device_train_batch_size", "greater than or equal"),
        ({"base_dtype": "int4"}, "base_dtype", "Input should be"),
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
    outcome = calculate(params, CATALOGUE)
    assert outcome.result is None
    assert words in outcome.errors[field]


def test_several_errors_at_once():
    outcome = calculate({"r": "x", "lora_alpha": "-2"}, CATALOGUE)
    assert set(outcome.errors) == {"r", "lora_alpha"}


def test_round_trip_through_the_query_string():
    params = {"model": "gpt2", "r": "32", "lora_alpha": "64", "target_modules": "c_attn, c_fc", "use_dora": "true",
              "rank_pattern": "c_fc=8", "gradient_checkpointing": "true", "devices": "4"}
    first = calculate(params, CATALOGUE)
    query = to_query(first.request.lora.model_dump(exclude_defaults=True),
                     first.request.training.model_dump(exclude_defaults=True), model="gpt2")
    second = calculate(query, CATALOGUE)
    assert second.result == first.result


def test_every_field_has_a_unique_name():
    names = [field.name for field in FIELDS]
    assert len(names) == len(set(names))
