"""The calculator's prediction for a job, stored beside what the run measures, with what it assumed."""

from __future__ import annotations

import logging
from typing import Any

from app.calc import CalcRequest, CalcTrainingSpec, Catalogue, compute
from app.calc.memory import BatchShape
from app.jobs.admission import predicted_seconds
from app.spec import JobSpec

logger = logging.getLogger(__name__)

# At submission the web process cannot know the worker's device and precision, so it predicts for fp32 on CPU;
# once the run has started the worker predicts again for the device and precision it reported.
PREDICTED_BASE_DTYPE = "fp32"


def run_precision(device: str | None) -> tuple[str, bool]:
    """The calculator's base_dtype and whether it is a CPU run, from a job's device text (app.training.loading).

    'cpu float32' and 'cpu bfloat16 autocast' keep fp32 weights; 'cpu bfloat16 weights, fp32 adapters' and
    'cuda (...) bfloat16' store bf16 weights; anything unknown keeps the submission's fp32 CPU assumption.
    """
    if not device:
        return PREDICTED_BASE_DTYPE, True
    on_cpu = device.startswith("cpu")
    bf16_weights = "bfloat16" in device and "autocast" not in device
    return ("bf16" if bf16_weights else "fp32"), on_cpu


def predict(spec: JobSpec, catalogue: Catalogue, total_steps: int | None = None, tokens_per_row: float = 0.0,
            flops_per_second: float | None = None, batch_shape: dict[str, int] | None = None,
            device: str | None = None) -> dict[str, Any]:
    """predicted_trainable_params, predicted_memory_bytes, predicted_seconds and prediction_basis from app.calc.

    At submission every sequence is taken to be max_seq_length long (an upper bound). Once the worker has
    tokenised the data it reports the widest micro-batch of the run and its loss positions (batch_shape,
    computed by app.training.data.peak_micro_batch from the real token lengths and the real batching, padded
    to the longest row or packed), and the prediction is made again from those.

    A model outside the calculator's catalogue (one the operator allowed) gets no prediction. For a catalogue
    model the calculator's FieldError (e.g. target_modules that match no module) propagates, so the job is
    refused before it is queued. The time is estimated when the steps, row length and throughput are given.
    """
    if spec.model not in catalogue.ids:
        logger.info("no prediction for %s: not in the calculator's catalogue", spec.model)
        return {"predicted_trainable_params": None, "predicted_memory_bytes": None, "predicted_seconds": None,
                "prediction_basis": None}
    base_dtype, on_cpu = run_precision(device)
    training = CalcTrainingSpec(**spec.training.model_dump(), base_dtype=base_dtype)
    shape = BatchShape(**batch_shape) if batch_shape else None
    result = compute(CalcRequest(model=spec.model, lora=spec.lora, training=training), catalogue, shape=shape, cpu=on_cpu)
    basis: dict[str, Any] = {"base_dtype": base_dtype, "optimizer": spec.training.optim,
                             "memory_basis": result.memory.basis}
    if shape:
        basis["sequences"] = (f"the run's widest micro-batch from the tokenised data: {shape.rows} rows padded to "
                              f"{shape.width} tokens, {shape.loss_tokens} loss positions (measured by the worker)")
    else:
        basis["sequences"] = f"every sequence {training.max_seq_length} tokens (max_seq_length; an upper bound until the data is tokenised)"
    seconds = None
    if total_steps is not None and flops_per_second:
        seconds = predicted_seconds(spec, result.base_params, total_steps, tokens_per_row, flops_per_second)
        basis["flops_per_second"] = flops_per_second
    return {
        "predicted_trainable_params": result.trainable_params,
        "predicted_memory_bytes": result.memory.total_bytes,
        "predicted_seconds": seconds,
        "prediction_basis": basis,
    }
