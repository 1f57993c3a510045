"""The link scheme between pages, in one place: where a parameter's "try it" goes."""

from __future__ import annotations

from urllib.parse import urlencode

from app.spec.sweeps import field_groups

# Training fields the calculator has (memory estimate, learning-rate lint); other training fields live on the job form.
# tests/web/test_calculator.py fails when this and the calculator's form drift apart.
CALCULATOR_TRAINING_FIELDS = frozenset({
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length", "gradient_checkpointing", "optim",
    "learning_rate", "framework", "typical_seq_length", "gpu",
})


# Training pages the calculator shows through another of its fields (precision -> base weights, LoRA+ -> learning_rate).
CALCULATOR_STAND_INS = frozenset({"bf16", "fp16", "loraplus_lr_ratio"})
# Pages neither the calculator nor the job form can try yet: their page says so instead of linking.
NOT_TRYABLE = frozenset({"neftune_noise_alpha"})


def try_it_url(slug: str, kind: str) -> str | None:
    """Where a parameter page's "try it" link opens, with that parameter in focus; None when nothing here has it."""
    if slug in NOT_TRYABLE:
        return None
    if kind == "training" and slug not in CALCULATOR_TRAINING_FIELDS | CALCULATOR_STAND_INS:
        return "/jobs/new?" + urlencode({"focus": slug})
    return "/calculator?" + urlencode({"focus": slug})


def sweep_url(slug: str, fields: dict[str, str] | None = None) -> str | None:
    """Where "sweep this" opens: the sweep form over that field (with the given job fields kept); None if no job field."""
    if slug not in field_groups():
        return None
    return "/experiments/new?" + urlencode({"field": slug, "propose": "1", **(fields or {})})
