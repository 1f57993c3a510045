"""Fixtures for training tests: tiny-llama specs and a recorder of the worker callbacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from app.spec import JobSpec

# Rows of different lengths, so padding and target counts differ between micro-batches.
VARIED_ROWS = [
    {"prompt": "What does r set?", "response": "The rank of the update."},
    {"prompt": "Name the scaling.", "response": "alpha / r"},
    {"prompt": "Is dropout applied to the base layer?", "response": "No: only to the input of the LoRA branch, so the frozen path is untouched."},
    {"prompt": "rsLoRA?", "response": "alpha / sqrt(r)"},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "DoRA adds what?"},
                  {"role": "assistant", "content": "A magnitude vector per output feature."}]},
    {"prompt": "Default r in peft?", "response": "8"},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": "What is B initialised to?"}, {"role": "assistant", "content": "Zeros."}]},
    {"prompt": "Which modules does all-linear skip?", "response": "The output layer."},
]


def job_spec(fields: dict) -> JobSpec:
    """A spec dict (as tiny_spec makes) validated into the JobSpec run_training takes."""
    return JobSpec.model_validate(fields)


def tiny_spec(**training) -> dict:
    """A tiny-llama job on the addition dataset; training fields override the defaults below."""
    return {
        "model": "tiny-llama",
        "dataset": "addition",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
        "training": {"learning_rate": 1e-2, "max_steps": 30, "per_device_train_batch_size": 8, "optim": "adamw_torch",
                     "max_seq_length": 128, "eval_steps": 10, "seed": 7, "warmup_steps": 0, **training},
    }


@dataclass
class Recorder:
    """Collects what run_training reports and answers should_stop from a predicate on the metrics so far."""

    stop_after_step: int | None = None
    metrics: list[dict] = field(default_factory=list)
    events: list[tuple[str, dict]] = field(default_factory=list)
    stop_checks: int = 0

    def on_metric(self, metric: dict) -> None:
        self.metrics.append(metric)

    def on_event(self, name: str, data: dict) -> None:
        self.events.append((name, data))

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self.stop_after_step is not None and len(self.metrics) >= self.stop_after_step


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """tiny-llama's matrices are too small for threads; on a busy machine two OpenMP threads run it 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def recorder() -> Recorder:
    """A fresh callback recorder."""
    return Recorder()
