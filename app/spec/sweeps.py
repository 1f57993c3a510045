"""Sweeps: one job field over a few values, everything else the same; the values proposed for each field.

Each value goes through the same field definition as a single job's (JobCreate), so a sweep can vary any
job field and is refused exactly where a job with that value would be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from app.spec.base import FROM_TEXT, SpecModel
from app.spec.errors import FieldError, describe, errors_of
from app.spec.job import JobCreate, JobLoraSpec
from app.spec.text import format_value
from app.spec.training import JobTrainingSpec

MIN_VALUES = 2  # a switch has two values; a number usually gets three to five
MAX_VALUES = 5
MAX_NAME_LENGTH = 120
# Fields a sweep cannot vary: they say what kind of model peft wraps or hold a nested config, not a knob to turn.
NOT_SWEPT = frozenset({"task_type", "target_parameters", "loftq_config"})
# Module names of the Llama-like models jobs train (tiny-llama, SmolLM2).
TARGET_PRESETS: dict[str, Any] = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "MLP": ["gate_proj", "up_proj", "down_proj"],
    "all-linear": "all-linear",
}
# What "sweep this" proposes per field: the values people compare first. Fields not here start from their default.
PROPOSED: dict[str, tuple[Any, ...]] = {
    "r": (4, 8, 16, 64),
    "lora_alpha": (8, 16, 32, 64),
    "lora_dropout": (0.0, 0.05, 0.1),
    "use_rslora": (False, True),
    "use_dora": (False, True),
    "target_modules": tuple(TARGET_PRESETS.values()),
    "bias": ("none", "lora_only", "all"),
    "init_lora_weights": (True, "gaussian", "pissa"),
    "learning_rate": (3e-5, 2e-4, 1e-3, 5e-3),  # a log grid around the job default
    "weight_decay": (0.0, 0.01, 0.1),
    "lr_scheduler_type": ("linear", "cosine", "constant"),
    "warmup_steps": (0, 2, 5),
    "max_grad_norm": (0.0, 0.3, 1.0),
    "per_device_train_batch_size": (2, 4, 8),
    "optim": ("adamw_torch", "sgd", "adafactor"),
    "seed": (1, 2, 3),  # the same job three times: how much of a difference is noise
}


def field_groups() -> dict[str, str]:
    """Every job field a sweep may vary, with its group (lora or training), in form order."""
    groups = {name: "lora" for name in JobLoraSpec.model_fields}
    groups |= {name: "training" for name in JobTrainingSpec.model_fields}
    return {name: group for name, group in groups.items() if name not in NOT_SWEPT}


def proposed_values(field: str) -> list[Any]:
    """The values a new sweep of field starts from."""
    return list(PROPOSED.get(field, ()))


def value_label(field: str, value: Any) -> str:
    """How a swept value is named in legends and captions: 'r = 16', 'target_modules = attention'."""
    preset = next((name for name, modules in TARGET_PRESETS.items() if modules == value), None)
    return f"{field} = {preset if field == 'target_modules' and preset else format_value(value)}"


class ExperimentCreate(SpecModel):
    """What POST /api/experiments accepts: a base job, the field to sweep and its values."""

    name: str | None = Field(None, max_length=MAX_NAME_LENGTH, description="A name for the experiment; empty names it by its field.")
    field: str = Field(max_length=64, description="The job field to sweep, as the spec names it (r, learning_rate, ...).")
    values: list[Any] = Field(min_length=MIN_VALUES, max_length=MAX_VALUES,
                              description=f"{MIN_VALUES} to {MAX_VALUES} values of the field, one job each.")
    base: dict[str, Any] = Field(description="A job as POST /api/jobs takes it; the swept field's own value is replaced by each value.")

    @field_validator("field")
    @classmethod
    def _sweepable(cls, value: str) -> str:
        groups = field_groups()
        if value not in groups:
            reason = "cannot be swept" if value in NOT_SWEPT else "is not a job field"
            raise PydanticCustomError("unknown_field", f"{describe(value)} {reason}; sweep one of {', '.join(groups)}")
        return value

    def variants(self, from_text: bool = False) -> list[JobCreate]:
        """One validated JobCreate per value; FieldErrors of every bad value at once, as SweepError."""
        group = field_groups()[self.field]
        if self.base.get("dataset_jsonl"):
            raise SweepError([FieldError(("base", "dataset_jsonl"), "a sweep trains on a catalogue dataset, so that its "
                                         "URL recreates it; choose a dataset instead of pasting rows").as_error()])
        jobs: list[JobCreate] = []
        errors: list[dict[str, Any]] = []
        for index, value in enumerate(self.values):
            payload = {**self.base, group: {**(self.base.get(group) or {}), self.field: value}}
            try:
                jobs.append(JobCreate.model_validate(payload, context=FROM_TEXT if from_text else None))
            except ValidationError as error:
                for item in errors_of(error):
                    located = _variant_error(item, index, self.field)
                    if located not in errors:  # a bad base field fails every value alike: say it once
                        errors.append(located)
        if errors:
            raise SweepError(errors)
        seen: set[str] = set()
        for index, job in enumerate(jobs):
            key = repr(getattr(getattr(job, group), self.field))
            if key in seen:
                errors.append(FieldError(("values", index), f"repeats an earlier value ({describe(self.values[index])}); "
                                                            "each value of a sweep must differ").as_error())
            seen.add(key)
        if errors:
            raise SweepError(errors)
        return jobs


def _variant_error(item: dict[str, Any], index: int, field: str) -> dict[str, Any]:
    """An error of one value's job, on values[index] when it is the swept field's, else on the base field it names."""
    names = [part for part in item["loc"] if part not in ("lora", "training")]
    if names[:1] == [field]:
        return {**item, "loc": ["values", index]}
    return {**item, "loc": ["base", *item["loc"]]}


class SweepError(ValueError):
    """Every problem of a sweep's values or base, as [{loc, msg, type}]."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in errors))


class ExperimentDefinition(BaseModel):
    """A sweep as stored and recorded: the field, its values (typed) and the base job (JobSpec JSON less the dataset rows)."""

    field: str
    values: list[Any]
    base: dict[str, Any]

    def labels(self) -> list[str]:
        """One legend label per value."""
        return [value_label(self.field, value) for value in self.values]


# The sweeps `lorapedia record` measures on SmolLM2 for the parameter pages: the job form's defaults (JOB_DEFAULTS: steps,
# batch, length, evaluations, learning rate) on a dataset whose effect shows within a few steps, with a LoRA that trains
# every linear layer; so each page's "run it yourself" is a default job with one field changed.
RECORD_BASE: dict[str, Any] = {
    "model": "smollm2-135m-instruct",
    "dataset": "telegram-style",
    "lora": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
    "training": {},
}
RECORDINGS: dict[str, tuple[Any, ...]] = {
    "r": (4, 16, 64),
    "learning_rate": (1e-4, 1e-3, 1e-2),
    "lora_alpha": (8, 32, 128),
    "use_rslora": (False, True),
    "lora_dropout": (0.0, 0.05, 0.1),
    "target_modules": tuple(TARGET_PRESETS.values()),
    "weight_decay": (0.0, 0.1, 1.0),
    "use_dora": (False, True),
}


def recorded_definition(field: str) -> tuple[ExperimentDefinition, list[JobCreate]]:
    """What `lorapedia record` runs for field: its definition (the base with every default spelt out) and one job per value."""
    values = list(RECORDINGS[field])
    variants = ExperimentCreate(field=field, values=values, base=RECORD_BASE).variants()
    group = field_groups()[field]
    base = variants[0].model_dump(mode="json", exclude_none=True, exclude={"dataset_jsonl"})
    base[group].pop(field, None)
    return ExperimentDefinition(field=field, values=values, base=base), variants
