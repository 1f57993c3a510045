"""`lorapedia record`: run the recorded sweeps on SmolLM2 through the real trainer and write content/runs/<field>.json."""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import torch

from app.content.runs import Machine, RecordedRun, RecordedSweep
from app.settings import Settings
from app.spec import JobSpec
from app.spec.sweeps import RECORDINGS, recorded_definition, value_label
from app.training.run import run_training

logger = logging.getLogger(__name__)


def machine(device_label: str) -> Machine:
    """This machine as a recorded run names it, with the precision the runs trained in."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    cores = os.cpu_count() or 1
    return Machine(description=f"{cpu}, {cores} cores", cpu=cpu, cores=cores, precision=device_label,
                   note="shared with other work while recording, which slows tokens/s but not the losses")


def record_sweep(field: str, settings: Settings, runs_dir: Path) -> Path:
    """Train every value of one recorded sweep in turn and write its file."""
    definition, variants = recorded_definition(field)
    values = definition.values
    runs = []
    for value, variant in zip(values, variants):
        spec = JobSpec(model=variant.model, dataset=variant.dataset, lora=variant.lora, training=variant.training)
        metrics: list[dict] = []
        started = time.perf_counter()
        logger.info("recording %s", value_label(field, value))
        with tempfile.TemporaryDirectory() as output_dir:
            result = run_training(spec, settings, Path(output_dir), metrics.append, lambda: False)
        runs.append(RecordedRun(
            value=value, label=value_label(field, value), device=result.device, status=result.status, metrics=metrics,
            trainable_params=result.trainable_params, total_params=result.total_params,
            peak_memory_bytes=result.peak_memory_bytes, wall_seconds=round(time.perf_counter() - started, 1),
            phase_seconds=result.phase_seconds,
            samples_before=result.samples_before, samples_after=result.samples_after))
    sweep = RecordedSweep(
        definition=definition,
        title=f"{field} on SmolLM2-135M-Instruct", recorded_on=date.today(), machine=machine(runs[0].device),
        versions={name: version(name) for name in ("torch", "transformers", "peft")} | {"python": platform.python_version()},
        runs=runs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{field}.json"
    path.write_text(json.dumps(sweep.model_dump(mode="json"), indent=1) + "\n")
    logger.info("wrote %s", path)
    return path


def record(settings: Settings, fields: list[str]) -> list[Path]:
    """Record the named sweeps (all of RECORDINGS when empty), one after another."""
    torch.set_num_threads(os.cpu_count() or 1)
    return [record_sweep(field, settings, settings.content_dir / "runs") for field in fields or list(RECORDINGS)]
