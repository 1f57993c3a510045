"""The calculator's prediction for a job, stored beside what the run measures, with what it assumed."""

from __future__ import annotations

import logging
from typing import Any

from app.calc import CalcRequest, CalcTrainingSpec, Catalogue, compute
from app.spec import JobSpec

logger = logging.getLogger(__name__)

# The worker trains in fp32 on CPU (bf16 on CUDA, which the web process cannot know), so predict for fp32.
PREDICTED_BASE_DTYPE = "fp32"


def predict(spec: JobSpec, catalogue: Catalogue) -> dict[str, Any]:
    """predicted_trainable_params, predicted_memory_bytes and prediction_basis from app.calc.

    A model outside the calculator's catalogue (one the operator allowed) gets no prediction. For a catalogue
    model the calculator's FieldError (e.g. target_modules that match no module) propagates, so the job is
    refused before it is queued.
    """
    if spec.model not in catalogue.ids:
        logger.info("no prediction for %s: not in the calculator's catalogue", spec.model)
        return {"predicted_trainable_params": None, "predicted_memory_bytes": None, "prediction_basis": None}
    training = CalcTrainingSpec(**spec.training.model_dump(), base_dtype=PREDICTED_BASE_DTYPE)
    result = compute(CalcRequest(model=spec.model, lora=spec.lora, training=training), catalogue)
    return {
        "predicted_trainable_params": result.trainable_params,
        "predicted_memory_bytes": result.memory.total_bytes,
        "prediction_basis": {"base_dtype": PREDICTED_BASE_DTYPE, "optimizer": spec.training.optim},
    }
