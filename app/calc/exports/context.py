"""ExportContext: what every exporter needs, and literal formatting shared by the Python exporters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec


@dataclass(frozen=True)
class ExportContext:
    """The configuration to export, with the model's id and the leaf names LoRA actually reaches."""

    lora: LoraSpec
    training: CalcTrainingSpec
    model_name: str  # a Hugging Face id when known, else a placeholder the user replaces
    adapted_leaves: tuple[str, ...] = ()  # e.g. ("q_proj", "v_proj"): for tools that take only plain names

    @property
    def plain_targets(self) -> list[str] | None:
        """target_modules as a list of names, or None when it is a regex or "all-linear"."""
        targets = self.lora.target_modules
        return list(targets) if isinstance(targets, list) else None


def py_literal(value: Any) -> str:
    """A Python literal for JSON-like data, with double-quoted strings."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(key)}: {py_literal(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a literal")


def call(name: str, arguments: dict[str, Any], indent: str = "    ") -> str:
    """A multi-line call expression with one keyword argument per line."""
    if not arguments:
        return f"{name}()"
    lines = [f"{indent}{key}={py_literal(value)}," for key, value in arguments.items()]
    return f"{name}(\n" + "\n".join(lines) + "\n)"


def lora_arguments(lora: LoraSpec) -> dict[str, Any]:
    """LoraConfig keyword arguments: r, alpha, targets and dropout always, other fields when not default."""
    data = lora.to_peft_kwargs()
    ordered = {"r": lora.r, "lora_alpha": lora.lora_alpha, "target_modules": lora.target_modules, "lora_dropout": lora.lora_dropout}
    ordered.update({key: value for key, value in data.items() if key not in ordered})
    return ordered


def schedule_settings(training: CalcTrainingSpec, *, scheduler: str = "lr_scheduler_type", epochs: str = "num_train_epochs",
                      warmup_ratio: bool = True) -> dict[str, Any]:
    """Scheduler, warmup, weight decay and the run's length under the tool's names.

    A warmup below 1 is a fraction of the run: transformers 5 reads it from warmup_steps itself, older
    TrainingArguments (which LLaMA-Factory, Axolotl and Unsloth's TRL build on) from warmup_ratio.
    """
    warmup = training.warmup_steps
    fraction = isinstance(warmup, float) and 0 < warmup < 1
    settings: dict[str, Any] = {scheduler: training.lr_scheduler_type}
    settings["warmup_ratio" if fraction and warmup_ratio else "warmup_steps"] = warmup
    settings["weight_decay"] = training.weight_decay
    settings[epochs] = training.num_train_epochs
    if training.max_steps > 0:
        settings["max_steps"] = training.max_steps
    return settings


def trainer_settings(training: CalcTrainingSpec, *, sequence: str, batch: str, optimizer: str, scheduler: str = "lr_scheduler_type",
                     epochs: str = "num_train_epochs") -> dict[str, Any]:
    """Sequence length, batch, accumulation, checkpointing, optimizer, learning rate, schedule and precision flags,
    under the tool's names for the sequence, batch, optimizer, scheduler and epochs; the others have one name everywhere."""
    return {
        sequence: training.max_seq_length,
        batch: training.per_device_train_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "gradient_checkpointing": training.gradient_checkpointing,
        optimizer: training.optim,
        "learning_rate": training.learning_rate,
        **schedule_settings(training, scheduler=scheduler, epochs=epochs),
        "bf16": training.base_dtype not in ("fp32", "fp16"),
        "fp16": training.base_dtype == "fp16",
    }


def annotate(text: str, notes: dict[str, str]) -> str:
    """Append `# note` to the first line that sets each key (`key:` in YAML, `key=` in a Python call)."""
    lines = text.split("\n")
    for key, note in notes.items():
        for index, line in enumerate(lines):
            stripped = line.lstrip()
            if stripped.startswith((f"{key}:", f"{key}=")):
                lines[index] = f"{line}  # {note}"
                break
    return "\n".join(lines)


def unhandled_note(lora: LoraSpec, handled: set[str], tool: str) -> str:
    """A YAML comment line listing the non-default LoraConfig fields the tool has no key for ("" when none)."""
    unsupported = {key: value for key, value in lora.to_peft_kwargs().items() if key not in handled}
    if not unsupported:
        return ""
    return f"# No {tool} key for: " + ", ".join(f"{key}={value!r}" for key, value in unsupported.items()) + "\n"


# libyaml's safe dumper when PyYAML was built with it (five times faster on the live page), else pure Python.
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
