"""Memory estimate: the published per-weight costs, and the directions each setting moves the total."""

from __future__ import annotations

import pytest

from app.calc.families import architecture_from_config
from app.calc.memory import estimate_memory
from app.calc.spec import LoraSpec
from app.calc.trainable import count_trainable
from app.calc.training_spec import TrainingSpec
from tests.calc.peft_oracle import catalogue_config

ARCH = architecture_from_config(catalogue_config("llama-3.1-8b"))
SPEC = LoraSpec(r=16, target_modules="all-linear")
COUNT = count_trainable(SPEC, ARCH)


def parts(dropout: float = 0.0, **training) -> dict[str, int]:
    estimate = estimate_memory(ARCH, COUNT, TrainingSpec(**training), dropout)
    assert estimate.total_bytes == sum(part.bytes for part in estimate.parts)
    return {part.key: part.bytes for part in estimate.parts}


@pytest.mark.parametrize(
    ("dtype", "bytes_per_param"),
    [("fp32", 4), ("bf16", 2), ("fp16", 2)],
)
def test_unquantised_weights(dtype, bytes_per_param):
    assert parts(base_dtype=dtype)["base_weights"] == ARCH.base_params * bytes_per_param


def test_nf4_bits_per_weight():
    linear = sum(m.in_features * m.out_features for m in ARCH.modules if m.kind == "linear" and m.name != "lm_head")
    rest = ARCH.base_params - linear
    plain = parts(base_dtype="nf4")["base_weights"]
    double = parts(base_dtype="nf4", bnb_4bit_use_double_quant=True)["base_weights"]
    assert plain == int(linear * (4 + 0.5) / 8 + rest * 2)  # 4 bits + one fp32 absmax per 64 weights
    assert double == pytest.approx(linear * (4 + 0.127) / 8 + rest * 2, rel=1e-4)  # QLoRA's 0.127 bit


def test_int8_keeps_one_scale_per_row():
    quantised = [m for m in ARCH.modules if m.kind == "linear" and m.name != "lm_head"]
    expected = sum(m.in_features * m.out_features + 4 * m.out_features for m in quantised)
    assert parts(base_dtype="int8")["base_weights"] == expected + (ARCH.base_params - sum(m.in_features * m.out_features for m in quantised)) * 2


@pytest.mark.parametrize(
    ("optimizer", "state_bytes"),
    [("adamw_torch", 8), ("paged_adamw_32bit", 8), ("adamw_8bit", 2), ("paged_adamw_8bit", 2), ("sgd", 0)],
)
def test_optimizer_state_per_trainable_parameter(optimizer, state_bytes):
    result = parts(optimizer=optimizer)
    assert result["optimizer"] == COUNT.trainable * state_bytes
    assert result["adapter_weights"] == result["gradients"] == COUNT.trainable * 4


def test_adafactor_is_far_smaller_than_adam():
    assert parts(optimizer="adafactor")["optimizer"] < parts(optimizer="adamw_torch")["optimizer"] / 4


@pytest.mark.parametrize(
    ("change", "grows"),
    [
        (dict(per_device_train_batch_size=16), True),
        (dict(max_seq_length=4096), True),
        (dict(gradient_checkpointing=True), False),
        (dict(gradient_accumulation_steps=8), None),
        (dict(devices=8), None),
    ],
)
def test_activation_direction(change, grows):
    base, changed = parts()["activations"], parts(**change)["activations"]
    if grows is None:
        assert changed == base  # memory is per device and per micro-batch
    else:
        assert (changed > base) == grows


def test_dropout_keeps_a_copy_of_inputs():
    assert parts(dropout=0.1)["activations"] > parts()["activations"]


def test_effective_batch_and_tokens():
    spec = TrainingSpec(per_device_train_batch_size=4, gradient_accumulation_steps=8, devices=2, max_seq_length=512)
    assert (spec.effective_batch_size, spec.tokens_per_step) == (64, 64 * 512)
