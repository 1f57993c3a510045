"""Fits on my GPU: every lever's total is the calculator's own, and "largest that fits" is the largest."""

from __future__ import annotations

import pytest

from app.calc import CalcRequest, compute
from app.calc.fit import TIGHT, changed, status_of
from app.spec.training import GPUS, MIB

LLAMA_24GB = {"model": "llama-3.1-8b", "lora": {"r": 16, "target_modules": "all-linear"},
              "training": {"per_device_train_batch_size": 8, "max_seq_length": 2048, "gpu": "rtx4090"}}
CASES = [
    LLAMA_24GB,
    {"model": "llama-3.1-8b", "lora": {"r": 64, "target_modules": ["q_proj", "v_proj"], "use_dora": True},
     "training": {"per_device_train_batch_size": 6, "max_seq_length": 1024, "gpu": "t4", "base_dtype": "nf4"}},
    {"model": "qwen2.5-7b", "lora": {"r": 32}, "training": {"per_device_train_batch_size": 4, "max_seq_length": 4096,
                                                            "typical_seq_length": 900, "gpu": "l4", "framework": "unsloth"}},
    {"model": "mistral-7b-v0.3", "lora": {"r": 16, "target_modules": "all-linear"},
     "training": {"per_device_train_batch_size": 2, "max_seq_length": 2048, "gpu": "custom", "gpu_memory_gib": 20,
                  "framework": "torchtune", "devices": 4}},
]


def total(request: CalcRequest | dict) -> int:
    return compute(request).memory.total_bytes


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case['model']}-{case['training']['gpu']}")
def test_each_lever_total_is_what_the_calculator_computes(case):
    fit = compute(case).fit
    assert fit.status == "out of memory" and fit.levers
    for lever in fit.levers + ([fit.suggested] if fit.suggested else []):
        request = CalcRequest.model_validate(_from_query(lever.query))
        assert compute(request).memory.total_bytes == lever.total_bytes, lever.key
        assert lever.status == status_of(lever.total_bytes, fit.capacity_bytes)


def _from_query(query: dict[str, str]) -> dict:
    """A query string back into a request, as the calculator page reads it."""
    from app.spec import FROM_TEXT, CalcTrainingSpec, LoraSpec

    lora = {k: v for k, v in query.items() if k in LoraSpec.model_fields}
    training = {k: v for k, v in query.items() if k in CalcTrainingSpec.model_fields}
    return {"model": query["model"], "lora": LoraSpec.model_validate(lora, context=FROM_TEXT),
            "training": CalcTrainingSpec.model_validate(training, context=FROM_TEXT)}


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case['model']}-{case['training']['gpu']}")
def test_largest_batch_and_longest_sequence_are_the_largest(case):
    request = CalcRequest.model_validate(case)
    fit = compute(request).fit
    capacity = fit.capacity_bytes
    if fit.largest_batch_size is not None:
        batch = fit.largest_batch_size
        assert total(changed(request, training={"per_device_train_batch_size": batch})) <= capacity
        assert total(changed(request, training={"per_device_train_batch_size": batch + 1})) > capacity
    else:
        assert total(changed(request, training={"per_device_train_batch_size": 1})) > capacity
    if fit.longest_seq_length is not None:
        seq = fit.longest_seq_length
        assert total(changed(request, training={"max_seq_length": seq, "typical_seq_length": None})) <= capacity
        assert total(changed(request, training={"max_seq_length": seq + 1, "typical_seq_length": None})) > capacity


def test_suggestion_for_an_8b_model_on_a_24gb_gpu_fits_and_keeps_the_effective_batch():
    fit = compute(LLAMA_24GB).fit
    suggested = fit.suggested
    assert suggested is not None and suggested.status != "out of memory"
    applied = _from_query(suggested.query)["training"]
    assert applied.effective_batch_size == 8 and applied.max_seq_length == 2048  # trains the same thing, slower
    assert fit.headroom_bytes == fit.capacity_bytes - fit.total_bytes < 0


def test_levers_come_cheapest_first_and_each_lowers_memory():
    fit = compute(LLAMA_24GB).fit
    keys = [lever.key for lever in fit.levers]
    assert keys == ["optim", "micro_batch", "checkpointing", "nf4", "seq", "r", "targets"]
    assert all(lever.total_bytes < fit.total_bytes for lever in fit.levers)


def test_badge_thresholds_and_gpu_sizes():
    capacity = GPUS["a100-80"][1] * MIB
    assert status_of(int(TIGHT * capacity), capacity) == "fits"
    assert status_of(int(TIGHT * capacity) + 1, capacity) == "tight"
    assert status_of(capacity, capacity) == "tight"
    assert status_of(capacity + 1, capacity) == "out of memory"
    small = compute({"model": "smollm2-135m-instruct", "training": {"gpu": "h200"}}).fit
    assert small.status == "fits" and small.levers == [] and small.suggested is None
    assert small.capacity_bytes == GPUS["h200"][1] * MIB
    assert compute({"model": "smollm2-135m-instruct"}).fit is None


def test_custom_gpu_needs_its_size():
    with pytest.raises(ValueError, match="gpu_memory_gib"):
        CalcRequest.model_validate({"model": "gpt2", "training": {"gpu": "custom"}})
    with pytest.raises(ValueError, match="gpu_memory_gib"):
        CalcRequest.model_validate({"model": "gpt2", "training": {"gpu": "t4", "gpu_memory_gib": 12}})
    fit = compute({"model": "gpt2", "training": {"gpu": "custom", "gpu_memory_gib": 12}}).fit
    assert fit.capacity_bytes == 12 * 1024**3
