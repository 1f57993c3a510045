"""Lints: which configuration raises which advice, each naming its page."""

from __future__ import annotations

import pytest

from app.calc.lints import collect_lints
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from app.spec.training import CalcTrainingSpec
from tests.calc.peft_oracle import architecture_of, catalogue_config


def codes(model_id: str = "smollm2-135m-instruct", training: dict | None = None, **lora) -> set[str]:
    arch = architecture_of(catalogue_config(model_id))
    spec = LoraSpec(**lora)
    lints = collect_lints(spec, CalcTrainingSpec(**(training or {})), arch, count_trainable(spec, arch))
    assert all(lint.page and lint.message.endswith((".", ")")) for lint in lints)
    return {lint.code for lint in lints}


@pytest.mark.parametrize(
    ("kwargs", "expected", "absent"),
    [
        (dict(r=16, lora_alpha=8, target_modules=["q_proj"]), "alpha_below_r", None),
        (dict(r=16, lora_alpha=8, use_rslora=True, target_modules=["q_proj"]), None, "alpha_below_r"),
        (dict(r=1024, lora_alpha=1024, target_modules=["k_proj"]), "rank_above_width", None),
        (dict(target_modules=["q_proj", "qkv_proj"]), "target_absent", None),
        (dict(target_modules=["q_proj"], rank_pattern={"down_proj": 4}), "rank_pattern_unused", None),
        (dict(target_modules=["q_proj"], alpha_pattern={"down_proj": 4}), "alpha_pattern_unused", None),
        (dict(target_modules=["q_proj"], exclude_modules=["no_such_module"]), "exclude_unused", None),
        (dict(target_modules=["q_proj"], exclude_modules=["down_proj"]), None, "exclude_unused"),
        (dict(target_modules=["q_proj"], lora_dropout=0.3), "dropout_high", None),
        (dict(target_modules=["q_proj"], lora_dropout=0.05), "dropout_memory", "dropout_high"),
        (dict(target_modules=["q_proj"], fan_in_fan_out=True), "fan_in_fan_out_linear", None),
        (dict(target_modules=["q_proj"], r=64, lora_alpha=128), "rslora_high_rank", None),
        (dict(target_modules=["q_proj"], loftq_config={"loftq_bits": 4}), "loftq_ignored", None),
        (dict(target_modules=["q_proj"], init_lora_weights=False), "init_false", None),
        (dict(target_modules=["q_proj"], init_lora_weights="eva"), "eva_ranks", None),
        (dict(target_modules=["q_proj"], bias="all"), "bias_trained", None),
        (dict(target_modules=["q_proj"], modules_to_save=["lm_head"]), "module_copied", None),
        (dict(target_modules=["q_proj"], task_type="SEQ_CLS"), "task_type", None),
        (dict(), "default_targets", None),
        (dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0), None, "alpha_below_r"),
    ],
)
def test_lint_table(kwargs, expected, absent):
    found = codes(**kwargs)
    if expected:
        assert expected in found
    if absent:
        assert absent not in found


@pytest.mark.parametrize(("rate", "code"), [(1e-2, "lr_high"), (1e-6, "lr_low"), (2e-4, None)])
def test_learning_rate_lints(rate, code):
    found = codes(training={"learning_rate": rate}, target_modules=["q_proj"])
    assert ({"lr_high", "lr_low"} & found) == ({code} if code else set())


def test_gpt2_conv1d_note_and_mixtral_rewrite_note():
    assert "fan_in_fan_out_conv1d" in codes("gpt2", target_modules=["c_attn"])
    assert "peft_rewrite" in codes("mixtral-8x7b", target_modules=["q_proj", "w1", "w3"])


def test_warnings_come_first():
    arch = architecture_of(catalogue_config("smollm2-135m-instruct"))
    spec = LoraSpec(r=16, lora_alpha=8, bias="all", target_modules=["q_proj"])
    severities = [lint.severity for lint in collect_lints(spec, CalcTrainingSpec(), arch, count_trainable(spec, arch))]
    assert severities == sorted(severities, key=lambda severity: severity != "warning")
