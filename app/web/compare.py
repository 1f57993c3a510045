"""Comparing runs: overlaid curves, the config fields that differ, a table of results and a caption computed from them.

One shape for every source: an experiment's jobs, any finished jobs, and recorded runs from content/runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.calc.curves import Flag, RunCurve, RunSummary, caption, summarise

COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00")  # Okabe-Ito: told apart with colour-blindness too
CHART_KEYS = ("step", "tokens_seen", "epoch", "train_loss", "eval_loss")
MAX_COMPARED = 5


@dataclass
class Run:
    """One run to compare, from any source."""

    label: str
    points: Sequence[Mapping[str, Any]]
    config: Mapping[str, Any]  # {"model", "dataset", "lora": {...}, "training": {...}}
    trainable_params: int | None = None
    peak_memory_bytes: int | None = None
    status: str = "succeeded"
    device: str | None = None
    job_id: int | None = None
    colour: str = ""
    summary: RunSummary | None = None
    tokens_per_second: float | None = None
    wall_seconds: float | None = None
    flags: list[Flag] = field(default_factory=list)


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """A job config as one level of fields: model, dataset, then LoRA and training fields by name."""
    flat = {key: value for key, value in config.items() if not isinstance(value, Mapping)}
    for group in ("lora", "training"):
        flat |= dict(config.get(group) or {})
    return flat


def config_diff(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The fields whose values differ between configs, each with its value per config (None where unset)."""
    flats = [flatten(config) for config in configs]
    names = list(dict.fromkeys(name for flat in flats for name in flat))
    return [(name, [flat.get(name) for flat in flats]) for name in names
            if len({repr(flat.get(name)) for flat in flats}) > 1]


def compare(runs: list[Run]) -> dict[str, Any]:
    """Everything a comparison shows: runs with colours and summaries, the diff, the caption, the chart's data."""
    for index, run in enumerate(runs):
        run.colour = COLOURS[index % len(COLOURS)]
        run.summary = summarise(RunCurve(run.label, run.points, run.trainable_params))
        run.flags = run.summary.flags
        speeds = [point["tokens_per_second"] for point in run.points if point.get("tokens_per_second")]
        run.tokens_per_second = statistics.median(speeds) if speeds else None
        elapsed = [point["elapsed_seconds"] for point in run.points if point.get("elapsed_seconds") is not None]
        run.wall_seconds = elapsed[-1] if elapsed else None
    chart = [{"label": run.label, "colour": run.colour,
              "points": [{key: point.get(key) for key in CHART_KEYS} for point in run.points]} for run in runs]
    return {
        "runs": runs,
        "diff": config_diff([run.config for run in runs]),
        "caption": caption([RunCurve(run.label, run.points, run.trainable_params) for run in runs]),
        "chart": chart,
        "has_exact_match": any(run.summary and run.summary.final_exact_match is not None for run in runs),
        "has_epoch": all(any(point.get("epoch") is not None for point in run.points) for run in runs if run.points),
        "has_tokens": all(any(point.get("tokens_seen") is not None for point in run.points) for run in runs if run.points),
    }
