"""Parity on every architecture transformers builds: the calculator, reading the helper's tree, equals peft's count."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.calc.architecture import CONV1D, LINEAR, Architecture
from app.calc.catalogue import load_catalogue
from app.calc.trainable import count_trainable
from app.spec.errors import FieldError
from app.spec.lora import LoraSpec
from tests.calc.peft_oracle import architecture_of, catalogue_config, peft_counts, shallow

SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, pad_token_id=0)
MODEL_TYPES = [
    "llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "qwen2_moe", "gemma", "gemma2", "gemma3_text", "gemma3",
    "mixtral", "gpt2", "olmo", "olmo2", "olmo3", "granite", "granitemoe", "cohere", "cohere2", "starcoder2",
    "gpt_neox", "gptj", "opt", "bloom", "bert", "roberta", "t5", "bart", "deepseek_v3", "deepseek_v2", "llama4_text",
    "gpt_oss", "stablelm", "ernie4_5", "phimoe", "olmoe", "helium", "codegen", "distilbert", "mt5", "jamba",
]
CATALOGUE_IDS = ["gpt2", "phi-3-mini", "mixtral-8x7b", "gemma-2-2b", "qwen2.5-0.5b", "gemma-3-1b-it", "gemma-3-4b-it",
                 "qwen3-8b", "qwen3-30b-a3b", "gpt-oss-20b", "olmo-2-7b", "deepseek-v2-lite", "bert-base-uncased",
                 "flan-t5-base"]


def _leaves(arch: Architecture) -> list[str]:
    """Linear leaf names of the first layer, in model order (what a person would list)."""
    found = [m.leaf for m in arch.modules if m.kind in (LINEAR, CONV1D) and m.layer == 0]
    return list(dict.fromkeys(found)) or [m.leaf for m in arch.modules if m.kind in (LINEAR, CONV1D)][:2]


def _three_d(arch: Architecture) -> list[str]:
    return sorted({f"{m.leaf}.{p.name}" for m in arch.modules for p in m.params if len(p.shape) == 3})


def cases(arch: Architecture) -> dict[str, dict[str, Any]]:
    """LoRA configs written for this model's own names."""
    leaves = _leaves(arch)
    two = leaves[:2]
    layers = "layers" if any(".layers." in m.name for m in arch.modules) else None
    result = {
        "all-linear": dict(r=4, lora_alpha=8, target_modules="all-linear"),
        "explicit": dict(r=4, target_modules=two),
        "regex": dict(r=2, target_modules=rf".*\.({'|'.join(two)})"),
        "dora": dict(r=4, target_modules=two, use_dora=True),
        "patterns": dict(r=8, target_modules=leaves[:3], rank_pattern={two[0]: 2}, alpha_pattern={two[-1]: 32}),
        "layers": dict(r=4, target_modules=two, layers_to_transform=[1], **({"layers_pattern": layers} if layers else {})),
        "bias-all": dict(r=4, target_modules=two, bias="all"),
        "bias-lora-only": dict(r=4, target_modules=two, bias="lora_only"),
        "lora-bias": dict(r=4, target_modules=two, lora_bias=True),
        "modules-to-save": dict(r=4, target_modules=two[:1], modules_to_save=[arch.output_layer.rpartition(".")[2] or "pooler"]),
        "default-targets": dict(r=4),
    }
    params = _three_d(arch)
    if params:
        result["target-parameters"] = dict(r=2, target_modules=two[:1], target_parameters=params[:2])
    return result


def assert_same_as_peft(config: dict[str, Any], lora: dict[str, Any], arch: Architecture) -> None:
    """Equal (trainable, all), or both refuse."""
    try:
        expected = peft_counts(config, lora)
    except (ValueError, TypeError, NotImplementedError, KeyError):
        with pytest.raises((FieldError, ValidationError)):
            count_trainable(LoraSpec(**lora), arch)
        return
    count = count_trainable(LoraSpec(**lora), arch)
    assert (count.trainable, count.total) == expected


def configs() -> list:
    params = [pytest.param(dict(SMALL, model_type=t), id=t) for t in MODEL_TYPES]
    params += [pytest.param(shallow(catalogue_config(i)), id=i) for i in CATALOGUE_IDS]
    return params


def test_at_least_thirty_model_types():
    assert len(set(MODEL_TYPES)) >= 30


@pytest.mark.parametrize("config", configs())
def test_all_linear_on_every_type(config):
    arch = architecture_of(config)
    assert_same_as_peft(config, cases(arch)["all-linear"], arch)


@pytest.mark.slow
@pytest.mark.parametrize("config", configs())
def test_every_case_on_every_type(config):
    arch = architecture_of(config)
    for lora in cases(arch).values():
        assert_same_as_peft(config, lora, arch)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", CATALOGUE_IDS[5:])
def test_full_size_catalogue_model_all_linear(model_id):
    """The shipped tree at full depth (every layer, expert and vision block) equals peft on the meta device."""
    model = load_catalogue().get(model_id)
    task_type = {"seq-cls": "SEQ_CLS", "seq2seq-lm": "SEQ_2_SEQ_LM"}.get(model.architecture.task)
    lora = dict(r=16, lora_alpha=32, target_modules="all-linear", **({"task_type": task_type} if task_type else {}))
    count = count_trainable(LoraSpec(**lora), model.architecture_for(task_type, None))
    assert (count.trainable, count.total) == peft_counts(model.config, lora)


@pytest.mark.parametrize("task_type", ["SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS"])
@pytest.mark.parametrize("model_type", ["bert", "roberta", "llama", "distilbert"])
def test_task_heads_are_saved(model_type, task_type):
    config = dict(SMALL, model_type=model_type)
    lora = dict(r=4, target_modules="all-linear", task_type=task_type)
    arch = architecture_of(config, {"SEQ_CLS": "seq-cls", "TOKEN_CLS": "token-cls", "QUESTION_ANS": "question-ans"}[task_type])
    assert_same_as_peft(config, lora, arch)
