"""Explain an adapter_config.json: statuses, problems, notes and the count when the model is known."""

from __future__ import annotations

import pytest

from app.spec.errors import FieldError
from app.calc.explain import explain
from tests.calc.peft_oracle import TREES, catalogue_config

ADAPTER = {
    "peft_type": "LORA", "r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "bias": "none",
    "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
    "fan_in_fan_out": None, "rank_pattern": {}, "inference_mode": True, "use_dora": False, "task_type": "CAUSAL_LM",
}


def statuses(explanation) -> dict[str, str]:
    return {item.key: item.status for item in explanation.keys}


def test_known_model_gets_the_exact_count():
    explanation = explain(ADAPTER)
    assert explanation.model_id == "qwen2.5-0.5b"
    assert explanation.result.trainable_params == 24 * 16 * ((896 + 896) + (896 + 128))
    assert explanation.calculator_query["model"] == "qwen2.5-0.5b"
    assert explanation.problems == []


def test_statuses():
    found = statuses(explain({**ADAPTER, "merge_weights": False, "from_the_future": 1}))
    assert found["r"] == "changed"
    assert found["lora_dropout"] == "default"
    assert found["fan_in_fan_out"] == "default"  # null means false here
    assert found["base_model_name_or_path"] == "metadata"
    assert found["merge_weights"] == "legacy"
    assert found["from_the_future"] == "unknown"


def test_unknown_keys_are_listed_not_fatal():
    explanation = explain({**ADAPTER, "from_the_future": 1})
    assert explanation.result is not None
    assert any("from_the_future" in note for note in explanation.notes)


def test_unlisted_model_needs_its_config():
    adapter = {**ADAPTER, "base_model_name_or_path": "someone/private-model"}
    assert explain(adapter).result is None
    explained = explain(adapter, model_config=catalogue_config("smollm2-135m-instruct"), trees=TREES)
    assert explained.result.trainable_params == 30 * 16 * ((576 + 576) + (576 + 192))
    assert explained.calculator_query["model"] == "custom"


@pytest.mark.parametrize(
    ("adapter", "words"),
    [
        ({**ADAPTER, "r": 0}, "r: must be at least 1"),
        ({**ADAPTER, "lora_bias": True, "use_dora": True}, "lora_bias"),
        ({**ADAPTER, "peft_type": "IA3"}, "LoRA adapters"),
        ({**ADAPTER, "target_modules": ["c_attn"]}, "match no module"),
        ({**ADAPTER, "lora_alpha": 10**400}, "lora_alpha: lora_alpha is a number of about 400 digits, beyond the range of a float"),
        ({**ADAPTER, "alpha_pattern": {"q_proj": 10**400}}, "beyond the range of a float"),
    ],
)
def test_problems_are_reported(adapter, words):
    assert any(words in problem for problem in explain(adapter).problems)


@pytest.mark.parametrize(
    ("model_config", "words"),
    [
        ({"model_type": ["llama"]}, "model_type must be a string"),
        ({"model_type": {"llama": 1}}, "model_type must be a string"),
        ({"model_type": "llama", "hidden_size": "32"}, "field 'hidden_size'"),
        ({"model_type": "bogus"}, "not known to transformers"),
    ],
)
def test_a_bad_pasted_config_is_refused_with_its_field(model_config, words):
    # the config.json is the caller's input, not a flaw of the adapter: an error, not a listed problem
    with pytest.raises(FieldError) as error:
        explain(ADAPTER, model_config, trees=TREES)
    assert error.value.loc[0] == "model_config" and words in error.value.message


def test_not_an_object():
    with pytest.raises(FieldError):
        explain(["r", 8])


NESTED: list = []
for _ in range(200):
    NESTED = [NESTED]


@pytest.mark.parametrize(
    ("adapter", "model_config", "loc", "words"),
    [
        ({**ADAPTER, "base_model_name_or_path": ["gpt2"]}, None, ("adapter_config", "base_model_name_or_path"), "must be a string"),
        ({**ADAPTER, "base_model_name_or_path": {"id": "gpt2"}}, None, ("adapter_config", "base_model_name_or_path"), "must be a string"),
        ({**ADAPTER, "base_model_name_or_path": 5}, None, ("adapter_config", "base_model_name_or_path"), "got 5"),
        ({**ADAPTER, "note": NESTED}, None, ("adapter_config",), "nested more than 64 levels"),
        (ADAPTER, {"model_type": "llama", "extra": NESTED}, ("model_config",), "nested more than 64 levels"),
    ],
)
def test_bad_input_names_the_field(adapter, model_config, loc, words):
    with pytest.raises(FieldError) as caught:
        explain(adapter, model_config, trees=TREES)
    assert caught.value.loc == loc
    assert words in caught.value.message
