"""The training half of a job spec: fields spelt as transformers' TrainingArguments, checked (pure, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from annotated_types import Interval

from app.settings import Settings

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay",
)
# Optimizers that run on CPU and GPU without extra packages (bitsandbytes, galore, ... are not installed).
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop")


class SpecError(ValueError):
    """A job spec field is missing, of the wrong type or out of range."""

    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class TrainingConfig:
    """Training arguments of one job; defaults are transformers 5 TrainingArguments' own."""

    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    lr_scheduler_kwargs: dict = field(default_factory=dict)
    warmup_steps: float = 0  # an int counts steps; a float in [0, 1) is a fraction of the total, as in transformers 5
    weight_decay: float = 0.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    num_train_epochs: float = 3.0
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 1024
    packing: bool = False
    seed: int = 42
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0  # 0 turns clipping off
    optim: str = "adamw_torch_fused"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    eval_steps: int | None = None  # None evaluates once, after the last step
    sample_max_new_tokens: int = 48  # Lorapedia's own: length of the before/after answers

    def warmup_step_count(self, total_steps: int) -> int:
        """Warmup in optimizer steps, resolving a fraction against the total."""
        if isinstance(self.warmup_steps, float) and self.warmup_steps < 1:
            return math.ceil(self.warmup_steps * total_steps)
        return int(self.warmup_steps)

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps the job runs: max_steps, or epochs over the (packed) training rows."""
        if self.max_steps > 0:
            return self.max_steps
        rows_per_step = self.per_device_train_batch_size * self.gradient_accumulation_steps
        return max(1, math.ceil(self.num_train_epochs * train_rows / rows_per_step))


# The one table of allowed ranges: TrainingSpec (the API and the form) and parse_training (the trainer) both read it.
TRAINING_RANGES: dict[str, Interval] = {
    "learning_rate": Interval(gt=0, le=1),
    "warmup_steps": Interval(ge=0),
    "weight_decay": Interval(ge=0, le=1),
    "max_steps": Interval(ge=-1),  # -1 trains for num_train_epochs; 0 is refused separately
    "num_train_epochs": Interval(gt=0, le=100),
    "per_device_train_batch_size": Interval(ge=1, le=256),
    "gradient_accumulation_steps": Interval(ge=1, le=256),
    "max_seq_length": Interval(ge=8),
    "seed": Interval(ge=0, le=2**32 - 1),  # numpy's seeds, which transformers.set_seed also sets, stop here
    "max_grad_norm": Interval(ge=0),
    "adam_beta1": Interval(ge=0, lt=1),
    "adam_beta2": Interval(ge=0, lt=1),
    "adam_epsilon": Interval(gt=0, le=1),
    "eval_steps": Interval(ge=1),
    "sample_max_new_tokens": Interval(ge=1, le=512),
}
INTEGER_FIELDS = frozenset({
    "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length", "seed", "eval_steps",
    "sample_max_new_tokens",
})


def range_violation(value: float, interval: Interval) -> str | None:
    """Why value lies outside interval ("must be at most 1"), or None when it is inside."""
    checks = (("gt", "greater than", lambda bound: value > bound), ("ge", "at least", lambda bound: value >= bound),
              ("lt", "less than", lambda bound: value < bound), ("le", "at most", lambda bound: value <= bound))
    for name, words, holds in checks:
        bound = getattr(interval, name)
        if bound is not None and not holds(bound):
            return f"must be {words} {bound:,}" if isinstance(bound, int) else f"must be {words} {bound:g}"
    return None


def parse_training(values: dict[str, Any], settings: Settings) -> TrainingConfig:
    """A TrainingConfig from the spec's "training" dict, or SpecError naming the field and the reason."""
    known = {f.name for f in fields(TrainingConfig)}
    for name in values:
        if name not in known:
            raise SpecError(f"training.{name}", "unknown training field")
    checked: dict[str, Any] = {"max_seq_length": min(TrainingConfig.max_seq_length, settings.max_seq_length)}
    for name, value in values.items():
        checked[name] = _check_field(name, value)
    config = TrainingConfig(**checked)
    if config.max_steps == 0:
        raise SpecError("training.max_steps", "must be -1 (use num_train_epochs) or at least 1")
    if config.max_seq_length > settings.max_seq_length:
        raise SpecError("training.max_seq_length", f"at most {settings.max_seq_length} on this instance")
    if config.max_steps > settings.max_steps:
        raise SpecError("training.max_steps", f"at most {settings.max_steps} on this instance")
    return config


def check_total_steps(config: TrainingConfig, train_rows: int, settings: Settings) -> int:
    """The job's optimizer steps, or SpecError when epochs over this dataset exceed the instance's limit."""
    total = config.total_steps(train_rows)
    if total > settings.max_steps:
        raise SpecError("training.num_train_epochs",
                        f"{config.num_train_epochs} epochs are {total} optimizer steps; at most {settings.max_steps} on this instance")
    return total


def _check_field(name: str, value: Any) -> Any:
    """One field's value, type-checked and range-checked."""
    where = f"training.{name}"
    if name in ("packing", "gradient_checkpointing"):
        if not isinstance(value, bool):
            raise SpecError(where, "must be true or false")
        return value
    if name == "lr_scheduler_type":
        if value not in SCHEDULERS:
            raise SpecError(where, f"must be one of {', '.join(SCHEDULERS)}")
        return value
    if name == "optim":
        if value not in OPTIMIZERS:
            raise SpecError(where, f"must be one of {', '.join(OPTIMIZERS)}")
        return value
    if name == "lr_scheduler_kwargs":
        if not isinstance(value, dict):
            raise SpecError(where, "must be an object")
        return value
    if name == "eval_steps" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(where, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(where, "must be finite")
    if name in INTEGER_FIELDS and not float(value).is_integer():
        raise SpecError(where, f"must be a whole number, got {value!r}")
    violation = range_violation(value, TRAINING_RANGES[name])
    if violation:
        raise SpecError(where, f"{violation}, got {value!r}")
    if name == "warmup_steps":
        # transformers 5 reads a value below 1 as a fraction of the total steps and anything else as a count.
        if value >= 1 and not float(value).is_integer():
            raise SpecError(where, f"must be a whole number of steps or a fraction below 1, got {value!r}")
        return float(value) if value < 1 else int(value)
    return int(value) if name in INTEGER_FIELDS else float(value)
