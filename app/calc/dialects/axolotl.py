"""Axolotl's YAML: adapter lora/qlora, lora_r, lora_alpha, lora_target_modules, lora_target_linear..."""

from __future__ import annotations

from typing import Any

from app.calc.dialects import Translation, names, take
from app.spec.errors import FieldError

SOURCE = "https://docs.axolotl.ai/docs/config-reference.html"
MARKERS = ("lora_r", "lora_target_modules", "lora_target_linear", "micro_batch_size", "sequence_len", "base_model")


def claims(config: dict[str, Any]) -> bool:
    """Axolotl names the method `adapter` and the rank `lora_r`."""
    return "peft_type" not in config and (config.get("adapter") in ("lora", "qlora")
                                          or sum(key in config for key in MARKERS) >= 2)


def translate(config: dict[str, Any]) -> Translation:
    """peft's equivalent of an Axolotl LoRA/QLoRA run."""
    adapter = config.get("adapter")
    if adapter not in ("lora", "qlora", None):
        raise FieldError(("adapter_config", "adapter"), f"Axolotl's adapter is {adapter!r}; only lora and qlora are LoRA adapters",
                         "not_an_adapter")
    if adapter is None:
        raise FieldError(("adapter_config", "adapter"), "this Axolotl config sets no adapter: it is full fine-tuning, "
                         "with no adapter to explain", "not_an_adapter")
    r = take(config, "lora_r", int, 8)
    lora: dict[str, Any] = {"r": r, "lora_alpha": take(config, "lora_alpha", (int, float), 16),
                            "lora_dropout": take(config, "lora_dropout", (int, float), 0.0)}
    notes: list[str] = []
    listed = names(config["lora_target_modules"], "lora_target_modules") if config.get("lora_target_modules") else []
    if take(config, "lora_target_linear", bool, False):
        lora["target_modules"] = "all-linear"
        notes.append("lora_target_linear: true makes Axolotl add every Linear layer but the output head, which is peft's "
                     "all-linear" + (f"; the listed {', '.join(listed)} are already among them." if listed else "."))
    elif listed:
        lora["target_modules"] = listed
    if "lora_alpha" not in config:
        notes.append("lora_alpha is not set; Axolotl passes none, so peft's default of 8 applies.")
        lora["lora_alpha"] = 8
    for key, target in (("peft_use_dora", "use_dora"), ("peft_use_rslora", "use_rslora"), ("lora_fan_in_fan_out", "fan_in_fan_out")):
        value = take(config, key, bool)
        if value is not None:
            lora[target] = value
    if config.get("lora_modules_to_save"):
        lora["modules_to_save"] = names(config["lora_modules_to_save"], "lora_modules_to_save")
    if config.get("peft_layers_to_transform") is not None:
        lora["layers_to_transform"] = config["peft_layers_to_transform"]
    training: dict[str, Any] = {}
    for key, target, kinds in (("learning_rate", "learning_rate", (int, float)), ("micro_batch_size", "per_device_train_batch_size", int),
                               ("gradient_accumulation_steps", "gradient_accumulation_steps", int), ("num_epochs", "num_train_epochs", (int, float)),
                               ("max_steps", "max_steps", int), ("sequence_len", "max_seq_length", int), ("warmup_steps", "warmup_steps", int),
                               ("weight_decay", "weight_decay", (int, float)), ("gradient_checkpointing", "gradient_checkpointing", bool),
                               ("sample_packing", "packing", bool), ("lr_scheduler", "lr_scheduler_type", str), ("optimizer", "optim", str),
                               ("seed", "seed", int)):
        value = take(config, key, kinds)
        if value is not None:
            training[target] = value
    if adapter == "qlora" or take(config, "load_in_4bit", bool, False):
        training["base_dtype"] = "nf4"
        notes.append("QLoRA: the base model is loaded in 4-bit NF4 (bitsandbytes); the adapter stays in 16/32-bit.")
    elif take(config, "load_in_8bit", bool, False):
        training["base_dtype"] = "int8"
    mapped = {"lora_r": "r", "lora_target_modules": "target_modules", "lora_target_linear": "target_modules (all-linear)",
              "micro_batch_size": "per_device_train_batch_size", "sequence_len": "max_seq_length", "num_epochs": "num_train_epochs",
              "lr_scheduler": "lr_scheduler_type", "optimizer": "optim", "sample_packing": "packing",
              "lora_modules_to_save": "modules_to_save", "peft_use_dora": "use_dora", "peft_use_rslora": "use_rslora"}
    model = config.get("base_model")
    return Translation("Axolotl", SOURCE, lora, training, notes, mapped, model if isinstance(model, str) else None)
