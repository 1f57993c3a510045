"""compute(): the entry point other packages call, from a dict or a CalcRequest."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.calc import FieldError, CalcRequest, compute
from tests.calc.peft_oracle import TREES, catalogue_config

REQUEST = {
    "model": "smollm2-135m-instruct",
    "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
    "training": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "max_seq_length": 256,
                 "gradient_checkpointing": True, "base_dtype": "bf16", "optim": "adamw_torch", "devices": 1},
}


def test_from_a_dict_and_from_a_request():
    assert compute(REQUEST) == compute(CalcRequest.model_validate(REQUEST))


def test_result_fields():
    result = compute(REQUEST)
    assert result.trainable_params == 30 * 16 * ((576 + 576) + (576 + 192))
    assert result.all_params == result.base_params + result.trainable_params
    assert result.memory.total_bytes == sum(part.bytes for part in result.memory.components)
    assert result.training.effective_batch_size == 8
    assert result.scaling.values == [2.0]
    assert [row.name for row in result.modules] == ["self_attn.q_proj", "self_attn.v_proj"]
    assert result.modules[0].count == 30


def test_pasted_config_equals_catalogue_entry():
    pasted = {**REQUEST, "model": None, "model_config": catalogue_config("smollm2-135m-instruct")}
    assert compute(pasted, trees=TREES).trainable_params == compute(REQUEST).trainable_params


def test_pasted_config_without_a_tree_source_is_refused():
    with pytest.raises(FieldError) as caught:
        compute({**REQUEST, "model": None, "model_config": catalogue_config("tiny-llama")})
    assert caught.value.loc == ("model_config",)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"lora": {"r": 0}}, ValidationError),
        ({"lora": {"target_modules": ["none_such"]}}, FieldError),
        ({"model": "gpt-5"}, FieldError),
        ({"training": {"optim": "lion"}}, ValidationError),
    ],
)
def test_errors_are_value_errors(change, error):
    with pytest.raises(error) as caught:
        compute({**REQUEST, **change})
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"_name_or_path": "org/model"}, "org/model"),
        ({"architectures": ["LlamaForCausalLM"]}, "LlamaForCausalLM"),
        ({"architectures": {"0": "x"}}, "pasted config.json"),
        ({"architectures": "LlamaForCausalLM"}, "pasted config.json"),
        ({"_name_or_path": ["org/model"], "architectures": [["x"]]}, "pasted config.json"),
        ({"_name_or_path": 7, "architectures": ["LlamaForCausalLM"]}, "LlamaForCausalLM"),
    ],
)
def test_pasted_config_name_uses_only_strings(fields, name):
    pasted = {**REQUEST, "model": None, "model_config": {**catalogue_config("tiny-llama"), **fields}}
    assert compute(pasted, trees=TREES).model.name == name


def test_calc_imports_nothing_heavy():
    code = (
        "import sys, app.calc, app.calc.explain, app.calc.exports, app.spec;"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'fastapi', 'starlette', 'sqlmodel', 'sqlalchemy') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == "[]"
