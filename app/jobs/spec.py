"""The training half of a job spec: fields spelt as transformers' TrainingArguments, checked (pure, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

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


_NUMBER_RULES: dict[str, tuple[type, float | None, float | None]] = {
    # name: (type, smallest allowed, largest allowed); None leaves that end open
    "learning_rate": (float, 0.0, 10.0),
    "warmup_steps": (float, 0.0, None),
    "weight_decay": (float, 0.0, 10.0),
    "max_steps": (int, -1, None),
    "num_train_epochs": (float, 0.0, 1000.0),
    "per_device_train_batch_size": (int, 1, 4096),
    "gradient_accumulation_steps": (int, 1, 4096),
    "max_seq_length": (int, 8, None),
    "seed": (int, 0, 2**32 - 1),
    "max_grad_norm": (float, 0.0, None),
    "adam_beta1": (float, 0.0, 1.0),
    "adam_beta2": (float, 0.0, 1.0),
    "adam_epsilon": (float, 0.0, 1.0),
    "eval_steps": (int, 1, None),
    "sample_max_new_tokens": (int, 1, 512),
}


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
    if config.learning_rate <= 0:
        raise SpecError("training.learning_rate", "must be greater than 0")
    if config.num_train_epochs <= 0 and config.max_steps <= 0:
        raise SpecError("training.num_train_epochs", "must be greater than 0 when max_steps is not set")
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
    kind, low, high = _NUMBER_RULES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(where, f"must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise SpecError(where, f"must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(where, "must be finite")
    if low is not None and value < low:
        raise SpecError(where, f"must be at least {low:g}, got {value!r}")
    if high is not None and value > high:
        raise SpecError(where, f"must be at most {high:g}, got {value!r}")
    if name == "warmup_steps":
        # transformers 5 reads a value below 1 as a fraction of the total steps and anything else as a count.
        if value >= 1 and not float(value).is_integer():
            raise SpecError(where, f"must be a whole number of steps or a fraction below 1, got {value!r}")
        return float(value) if value < 1 else int(value)
    return int(value) if kind is int else float(value)
