"""The calculator's prediction for a job's config, stored beside what the run measures."""

from __future__ import annotations

import logging
from typing import Any

from app.settings import Settings

logger = logging.getLogger(__name__)


def predict(model: str, lora: dict[str, Any], training: dict[str, Any], settings: Settings) -> dict[str, int | None]:
    """predicted_trainable_params and predicted_memory_bytes from app.calc; None where it cannot say."""
    try:
        from app.calc import compute
    except ImportError:  # the calculator has not landed in this tree yet
        return {"predicted_trainable_params": None, "predicted_memory_bytes": None}
    try:
        result = compute(model, lora, training, settings)
    except Exception:  # a prediction must never stop a job from being queued; the page shows "not predicted"
        logger.exception("no prediction for %s", model)
        return {"predicted_trainable_params": None, "predicted_memory_bytes": None}
    return {
        "predicted_trainable_params": result["trainable_params"],
        "predicted_memory_bytes": result["memory"]["total"],
    }
