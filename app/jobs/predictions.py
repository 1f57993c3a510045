"""The calculator's prediction for a job's config, stored beside what the run measures."""

from __future__ import annotations

import logging
from typing import Any, get_args

from app.calc import compute
from app.calc.training_spec import Optimizer
from app.settings import Settings

logger = logging.getLogger(__name__)

# the worker trains in fp32 on CPU (bf16 on CUDA, which the web process cannot know), so predict for fp32
PREDICTED_BASE_DTYPE = "fp32"
UNPREDICTED = {"predicted_trainable_params": None, "predicted_memory_bytes": None}


def predict(model: str, lora: dict[str, Any], training: dict[str, Any], settings: Settings) -> dict[str, int | None]:
    """predicted_trainable_params and predicted_memory_bytes from app.calc; None where it cannot say."""
    request = {
        "model": model,
        "lora": lora,
        "training": {
            "per_device_train_batch_size": training["per_device_train_batch_size"],
            "gradient_accumulation_steps": training["gradient_accumulation_steps"],
            "max_seq_length": training["max_seq_length"],
            "gradient_checkpointing": training["gradient_checkpointing"],
            "base_dtype": PREDICTED_BASE_DTYPE,
            "optimizer": training["optim"] if training["optim"] in get_args(Optimizer) else "adamw_torch",
        },
    }
    try:
        result = compute(request)
    except (ValueError, KeyError) as error:  # e.g. an operator-allowed model outside the calculator's catalogue
        logger.info("no prediction for %s: %s", model, error)
        return dict(UNPREDICTED)
    return {"predicted_trainable_params": result.trainable_params, "predicted_memory_bytes": result.memory.total_bytes}
