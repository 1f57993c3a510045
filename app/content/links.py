"""The link scheme between pages, in one place: where a parameter's "try it" goes."""

from __future__ import annotations

from urllib.parse import urlencode

# Training fields the calculator has (memory estimate, learning-rate lint); other training fields live on the job form.
# tests/web/test_calculator.py fails when this and the calculator's form drift apart.
CALCULATOR_TRAINING_FIELDS = frozenset({
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length", "gradient_checkpointing", "optim",
    "learning_rate",
})


def try_it_url(slug: str, kind: str) -> str:
    """Where a parameter page's "try it" link opens, with that parameter in focus."""
    if kind == "training" and slug not in CALCULATOR_TRAINING_FIELDS:
        return "/jobs/new?" + urlencode({"focus": slug})
    return "/calculator?" + urlencode({"focus": slug})
