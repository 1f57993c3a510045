"""The job form: fields read from LoraSpec and TrainingSpec, strings turned into a JobCreate, errors per field."""

from __future__ import annotations

import pytest

from app.calc.spec import LoraSpec
from app.jobs.form import FormErrors, form_fields, parse_form, prefill, query_for
from app.jobs.schemas import TrainingSpec


def test_every_lora_and_training_field_has_an_input():
    names = [field.name for field in form_fields()]
    assert names == [*LoraSpec.model_fields, *TrainingSpec.model_fields]


def test_every_text_input_is_read_by_the_calculators_parser():
    from app.calc.form import FIELD_BY_NAME

    text_fields = [field.name for field in form_fields() if field.kind == "text"]
    assert text_fields and all(name in FIELD_BY_NAME for name in text_fields), "a new text field needs a calculator parser"


def test_the_url_query_prefills_known_fields_only():
    values = prefill({"r": "16", "learning_rate": "0.001", "model": "smollm2-135m-instruct", "nonsense": "x"})
    assert (values["r"], values["learning_rate"], values["model"]) == ("16", "0.001", "smollm2-135m-instruct")
    assert values["lora_alpha"] == "8" and "nonsense" not in values


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("r", "16", 16),
        ("lora_alpha", "16", 16),
        ("lora_alpha", "0.5", 0.5),
        ("target_modules", "q_proj, v_proj", ["q_proj", "v_proj"]),
        ("target_modules", "q_proj", ["q_proj"]),
        ("target_modules", "all-linear", "all-linear"),
        ("target_modules", r".*\.(q|v)_proj", r".*\.(q|v)_proj"),
        ("target_modules", '["model.layers.0.self_attn.q_proj"]', ["model.layers.0.self_attn.q_proj"]),
        ("layers_to_transform", "0, 1", [0, 1]),
        ("rank_pattern", '{"q_proj": 4}', {"q_proj": 4}),
        ("init_lora_weights", "false", False),
        ("init_lora_weights", "gaussian", "gaussian"),
        ("use_dora", "true", True),
        ("learning_rate", "1e-4", 1e-4),
    ],
)
def test_form_strings_become_typed_values(name, text, expected):
    request = parse_form({"model": "tiny-llama", "dataset": "addition", name: text})
    group = request.lora if name in LoraSpec.model_fields else request.training
    assert getattr(group, name) == expected


def test_an_unticked_box_is_false_and_an_empty_optional_number_is_none():
    request = parse_form({"model": "tiny-llama", "dataset": "addition", "use_rslora": "false", "eval_steps": ""})
    assert request.lora.use_rslora is False and request.training.eval_steps is None


def test_pasted_jsonl_replaces_the_chosen_dataset():
    request = parse_form({"model": "tiny-llama", "dataset": "addition", "dataset_jsonl": '{"prompt": "a", "response": "b"}'})
    assert (request.dataset, request.dataset_jsonl) == (None, '{"prompt": "a", "response": "b"}')


def test_each_bad_field_gets_its_own_message():
    with pytest.raises(FormErrors) as caught:
        parse_form({"model": "tiny-llama", "dataset": "addition", "r": "eight", "max_steps": "1.5"})
    assert set(caught.value.errors) == {"r", "max_steps"}
    with pytest.raises(FormErrors) as caught:
        parse_form({"model": "tiny-llama", "dataset": "addition", "lora_dropout": "1.0", "rank_pattern": "{bad"})
    assert set(caught.value.errors) == {"rank_pattern", "lora_dropout"}, "an unreadable field hides no other error"
    with pytest.raises(FormErrors) as caught:
        parse_form({"model": "tiny-llama", "dataset": "addition", "r": "0", "learning_rate": "abc", "max_steps": "0"})
    assert set(caught.value.errors) == {"r", "learning_rate", "max_steps"}
    assert "is not a number" in caught.value.errors["learning_rate"]
    with pytest.raises(FormErrors) as caught:
        parse_form({"model": "tiny-llama", "dataset": "addition", "lora_dropout": "1.0"})
    assert "lora_dropout" in caught.value.errors


def test_a_stored_config_round_trips_through_the_run_again_link():
    original = parse_form({"model": "tiny-llama", "dataset": "addition", "r": "4", "target_modules": "q_proj, k_proj", "max_steps": "7"})
    config = {"lora": original.lora.model_dump(mode="json"), "training": original.training.model_dump(mode="json")}
    again = parse_form({"model": "tiny-llama", "dataset": "addition", **query_for(config)})
    assert again == original
