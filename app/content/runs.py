"""Recorded runs: sweeps measured once with the real trainer (`lorapedia record`), kept as content/runs/*.json."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.spec.sweeps import MAX_VALUES, MIN_VALUES, ExperimentDefinition, field_groups

MAX_POINTS = 1000  # metric rows per run at most


class RecordedPoint(BaseModel):
    """One optimizer step of a recorded run."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=1)
    train_loss: float | None = None
    eval_loss: float | None = None
    exact_match: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    elapsed_seconds: float | None = None
    tokens_seen: int | None = None
    epoch: float | None = None


class RecordedRun(BaseModel):
    """One value of a recorded sweep: its curve, samples and measured figures."""

    model_config = ConfigDict(extra="forbid")

    value: Any
    label: str
    device: str
    status: str
    metrics: list[RecordedPoint] = Field(max_length=MAX_POINTS)
    trainable_params: int
    total_params: int
    peak_memory_bytes: int | None = None
    wall_seconds: float
    phase_seconds: dict[str, float] = Field(default_factory=dict, description="Wall seconds per phase of the run (RunResult's).")
    samples_before: list[dict[str, str]] = Field(default_factory=list)
    samples_after: list[dict[str, str]] = Field(default_factory=list)


class Machine(BaseModel):
    """Where a sweep was recorded."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="CPU or GPU model and core count, as people read it.")
    cpu: str
    cores: int
    precision: str
    note: str = ""


class RecordedSweep(BaseModel):
    """A recorded sweep file: definition, runs, machine, library versions and date."""

    model_config = ConfigDict(extra="forbid")

    definition: ExperimentDefinition
    title: str
    recorded_on: date
    machine: Machine
    versions: dict[str, str]
    runs: list[RecordedRun] = Field(min_length=MIN_VALUES, max_length=MAX_VALUES)

    @field_validator("definition")
    @classmethod
    def _sweepable(cls, definition: ExperimentDefinition) -> ExperimentDefinition:
        if definition.field not in field_groups():
            raise ValueError(f"{definition.field!r} is not a job field a sweep can vary")
        return definition

    @property
    def field(self) -> str:
        """The swept field."""
        return self.definition.field


class RunsError(ValueError):
    """A recorded-run file that does not match the schema."""


def load_runs(runs_dir: Path) -> dict[str, RecordedSweep]:
    """Every recorded sweep under runs_dir, keyed by swept field (one file per field); RunsError names a bad file."""
    sweeps: dict[str, RecordedSweep] = {}
    for path in sorted(runs_dir.glob("*.json")) if runs_dir.is_dir() else []:
        try:
            sweep = RecordedSweep.model_validate(json.loads(path.read_text()))
        except (ValidationError, json.JSONDecodeError) as error:
            raise RunsError(f"{path}: {error}") from error
        if len(sweep.runs) != len(sweep.definition.values):
            raise RunsError(f"{path}: {len(sweep.runs)} runs for {len(sweep.definition.values)} values")
        if sweep.field in sweeps:
            raise RunsError(f"{path}: a second recorded sweep of {sweep.field}")
        sweeps[sweep.field] = sweep
    return sweeps
