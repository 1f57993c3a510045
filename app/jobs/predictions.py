"""The calculator's prediction for a job's config, stored beside what the run measures, with its assumptions."""

from __future__ import annotations

import logging
from typing import Any, get_args

from app.calc import compute, load_catalogue
from app.calc.training_spec import Optimizer
from app.settings import Settings

logger = logging.getLogger(__name__)

# The worker trains in fp32 on CPU (bf16 on CUDA, which the web process cannot know), so predict for fp32.
PREDICTED_BASE_DTYPE = "fp32"
# The calculator's estimate for optimizers it does not model (adagrad, rmsprop: one state tensor, not AdamW's two).
FALLBACK_OPTIMIZER = "adamw_torch"
UNPREDICTED = {"predicted_trainable_params": None, "predicted_memory_bytes": None}


def catalogue_ids(settings: Settings) -> list[str]:
    """Models the calculator knows: content/models of this instance."""
    return load_catalogue(settings.content_dir / "models").ids


def assumptions(training: dict[str, Any]) -> dict[str, Any]:
    """What the estimate assumes, stored with the job so its page can say what was predicted."""
    optimizer = training["optim"] if training["optim"] in get_args(Optimizer) else FALLBACK_OPTIMIZER
    return {"base_dtype": PREDICTED_BASE_DTYPE, "optimizer": optimizer, "job_optimizer": training["optim"]}


def predict(model: str, lora: dict[str, Any], training: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """predicted_trainable_params and predicted_memory_bytes from app.calc, and the assumptions they rest on.

    A model outside the calculator's catalogue (one the operator allowed) gets no prediction. For a
    catalogue model the calculator's errors propagate: CalcInputError (e.g. target_modules that
    match no module) or pydantic.ValidationError, so the job is refused before it is queued.
    """
    if model not in catalogue_ids(settings):
        logger.info("no prediction for %s: not in the calculator's catalogue", model)
        return {**UNPREDICTED, "assumptions": None}
    used = assumptions(training)
    request = {
        "model": model,
        "lora": lora,
        "training": {
            "per_device_train_batch_size": training["per_device_train_batch_size"],
            "gradient_accumulation_steps": training["gradient_accumulation_steps"],
            "max_seq_length": training["max_seq_length"],
            "gradient_checkpointing": training["gradient_checkpointing"],
            "base_dtype": used["base_dtype"],
            "optimizer": used["optimizer"],
        },
    }
    result = compute(request, load_catalogue(settings.content_dir / "models"))
    return {
        "predicted_trainable_params": result.trainable_params,
        "predicted_memory_bytes": result.memory.total_bytes,
        "assumptions": used,
    }
