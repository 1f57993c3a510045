"""app.spec.lora: peft's names and defaults, strict types, and cross-field errors reported on the field to change."""

from __future__ import annotations

import dataclasses
import math

import peft
import pytest
from pydantic import ValidationError

from app.spec.errors import errors_of
from app.spec.lora import LoraSpec


def test_every_field_is_a_loraconfig_field_with_the_same_default():
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory()) for f in dataclasses.fields(peft.LoraConfig)}
    for name, field in LoraSpec.model_fields.items():
        assert name in defaults, name
        ours = field.default if field.default_factory is None else field.default_factory()
        assert ours == defaults[name], name


def test_a_plain_dict_builds_a_spec():
    spec = LoraSpec(**{"r": 16, "lora_alpha": 32, "target_modules": ["q_proj"], "lora_dropout": 0.05})
    assert (spec.r, spec.lora_alpha, spec.target_modules) == (16, 32, ["q_proj"])
    assert spec.to_peft_kwargs() == {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj"], "lora_dropout": 0.05}


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"r": 0}, "r", "at least 1"),
        ({"r": -1}, "r", "at least 1"),
        ({"r": 1.5}, "r", "whole number"),
        ({"r": "8"}, "r", "whole number, got '8'"),
        ({"r": True}, "r", "whole number"),
        ({"r": 10**9}, "r", "at most 65,536"),
        ({"lora_alpha": -1}, "lora_alpha", "greater than 0"),
        ({"lora_alpha": 0}, "lora_alpha", "greater than 0"),
        ({"lora_alpha": math.inf}, "lora_alpha", "finite"),
        ({"lora_alpha": 10**400}, "lora_alpha", "beyond the range of a float"),
        ({"lora_alpha": -(10**400)}, "lora_alpha", "beyond the range of a float"),
        ({"lora_dropout": 10**400}, "lora_dropout", "beyond the range of a float"),
        ({"lora_dropout": 1.0}, "lora_dropout", "less than 1"),
        ({"lora_dropout": math.nan}, "lora_dropout", "finite number, got nan"),
        ({"lora_dropout": -0.1}, "lora_dropout", "at least 0"),
        ({"bias": "some"}, "bias", "'none', 'all' or 'lora_only'"),
        ({"target_modules": "("}, "target_modules", "not a valid regular expression"),
        ({"target_modules": ["q_proj", " "]}, "target_modules", "empty name"),
        ({"init_lora_weights": "kaiming"}, "init_lora_weights", "not one of"),
        ({"layers_to_transform": [-1]}, "layers_to_transform", "start at 0"),
        ({"rank_pattern": {"q_proj": 0}}, "rank_pattern", "from 1 to 65,536"),
        ({"rank_pattern": {"q_proj": "4"}}, "rank_pattern", "whole number"),
        ({"alpha_pattern": {"q_proj": -2}}, "alpha_pattern", "above 0"),
        ({"alpha_pattern": {"q_proj": 10**400}}, "alpha_pattern", "beyond the range of a float"),
        ({"alpha_pattern": {"q_proj": math.nan}}, "alpha_pattern", "finite number above 0, got nan"),
        ({"alpha_pattern": {"q_proj": "16"}}, "alpha_pattern", "must be a number"),
        ({"alpha_pattern": {"(": 16}}, "alpha_pattern", "key '(' is not a valid regular expression"),
        ({"modules_to_save": ["lm_head("]}, "modules_to_save", "entry 'lm_head(' is not a valid regular expression"),
        ({"lora_bias": True, "use_dora": True}, "lora_bias", "DoRA"),
        ({"lora_bias": True, "init_lora_weights": "pissa"}, "lora_bias", "init_lora_weights"),
        ({"target_modules": "all-linear", "layers_to_transform": [0]}, "layers_to_transform", "string"),
        ({"target_modules": ".*q_proj", "layers_pattern": "layers"}, "layers_pattern", "string"),
        ({"layers_pattern": "layers"}, "layers_pattern", "needs layers_to_transform"),
        ({"init_lora_weights": "orthogonal", "r": 7}, "r", "even rank"),
        ({"init_lora_weights": "orthogonal", "rank_pattern": {"q": 3}}, "r", "even rank"),
        ({"init_lora_weights": "loftq"}, "loftq_config", "needs a loftq_config"),
        ({"use_dora": True, "init_lora_weights": "mica"}, "use_dora", "mica"),
        ({"lora_rank": 8}, "lora_rank", "not a field here"),
        ({"loftq_config": {"bits": 4}}, "loftq_config", "not a field here"),
        ({"loftq_config": {"loftq_bits": 16}}, "loftq_config", "at most 8"),
        ({"task_type": "CAUSAL"}, "task_type", "CAUSAL_LM"),
    ],
)
def test_invalid_fields_name_the_field_and_reason(fields, loc, words):
    with pytest.raises(ValidationError) as caught:
        LoraSpec(**fields)
    error = errors_of(caught.value)[0]
    assert error["loc"][0] == loc
    assert words in error["msg"]


@pytest.mark.parametrize(
    "fields",
    [
        {"init_lora_weights": "pissa_niter_4"},
        {"init_lora_weights": False},
        {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4}},
        {"target_modules": "all-linear"},
        {"target_modules": r".*\.(q|v)_proj"},
        {"layers_to_transform": 3, "layers_pattern": "layers", "target_modules": ["q_proj"]},
        {"lora_alpha": 0.5, "lora_dropout": 0},
        {"rank_pattern": {r"model\.layers\.0\..*": 4}, "alpha_pattern": {"q_proj": 1.5}},
    ],
)
def test_valid_fields_pass(fields):
    LoraSpec(**fields)


@pytest.mark.parametrize(
    ("fields", "peft_rejects"),
    [
        ({"lora_bias": True, "use_dora": True}, True),
        ({"target_modules": "all-linear", "layers_to_transform": [0]}, True),
        ({"layers_pattern": "layers"}, True),
    ],
)
def test_cross_field_rules_are_peft_rules(fields, peft_rejects):
    with pytest.raises(ValueError):
        peft.LoraConfig(**fields)
    with pytest.raises(ValidationError):
        LoraSpec(**fields)


def test_the_unmodelled_keys_and_the_spec_give_every_key_of_a_saved_default_config(tmp_path):
    import json

    from app.spec.lora import PEFT_VERSION, adapter_config_defaults

    peft.LoraConfig().save_pretrained(str(tmp_path))
    assert adapter_config_defaults() == json.loads((tmp_path / "adapter_config.json").read_text())
    assert PEFT_VERSION == peft.__version__


def test_every_unmodelled_key_has_a_meaning():
    from app.spec.lora import UNMODELLED_KEYS

    assert all(key.meaning.endswith(".") for key in UNMODELLED_KEYS.values())
