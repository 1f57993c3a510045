"""LLaMA-Factory's YAML (llamafactory-cli train): finetuning_type lora, lora_rank, lora_target, additional_target..."""

from __future__ import annotations

from typing import Any

from app.calc.dialects import Translation, names, take
from app.spec.errors import FieldError

SOURCE = "https://github.com/hiyouga/LLaMA-Factory/blob/main/src/llamafactory/hparams/finetuning_args.py"


def claims(config: dict[str, Any]) -> bool:
    """LLaMA-Factory names the method finetuning_type and the rank lora_rank."""
    return "peft_type" not in config and ("finetuning_type" in config or "lora_rank" in config or "lora_target" in config)


def translate(config: dict[str, Any]) -> Translation:
    """peft's equivalent of a LLaMA-Factory LoRA run."""
    kind = take(config, "finetuning_type", str, "lora")
    if kind != "lora":
        raise FieldError(("adapter_config", "finetuning_type"), f"this LLaMA-Factory config uses finetuning_type {kind!r}, "
                         "not LoRA: there is no LoRA adapter to explain", "not_an_adapter")
    r = take(config, "lora_rank", int, 8)
    alpha = take(config, "lora_alpha", (int, float))
    notes = []
    if alpha is None:
        alpha = 2 * r
        notes.append(f"lora_alpha is not set: LLaMA-Factory uses twice lora_rank ({alpha}), not peft's default of 8.")
    lora: dict[str, Any] = {"r": r, "lora_alpha": alpha, "lora_dropout": take(config, "lora_dropout", (int, float), 0.0)}
    target = names(config.get("lora_target", "all"), "lora_target")
    if target == ["all"]:
        lora["target_modules"] = "all-linear"
        notes.append("lora_target: all makes LLaMA-Factory find every Linear layer but the output head (and, for "
                     "multimodal models, the vision tower's), which peft's all-linear nearly matches.")
    else:
        lora["target_modules"] = target
    if config.get("additional_target"):
        lora["modules_to_save"] = names(config["additional_target"], "additional_target")
    for key, field_name in (("use_dora", "use_dora"), ("use_rslora", "use_rslora")):
        value = take(config, key, bool)
        if value is not None:
            lora[field_name] = value
    if config.get("pissa_init"):
        lora["init_lora_weights"] = "pissa"
    training: dict[str, Any] = {}
    for key, field_name, kinds in (("learning_rate", "learning_rate", (int, float)), ("per_device_train_batch_size", "per_device_train_batch_size", int),
                                   ("gradient_accumulation_steps", "gradient_accumulation_steps", int), ("num_train_epochs", "num_train_epochs", (int, float)),
                                   ("max_steps", "max_steps", int), ("lr_scheduler_type", "lr_scheduler_type", str), ("warmup_steps", "warmup_steps", int),
                                   ("cutoff_len", "max_seq_length", int), ("seed", "seed", int), ("weight_decay", "weight_decay", (int, float)),
                                   ("optim", "optim", str), ("packing", "packing", bool)):
        value = take(config, key, kinds)
        if value is not None:
            training[field_name] = value
    if take(config, "warmup_ratio", (int, float)):
        notes.append("warmup_ratio is a fraction of the run; the calculator counts warmup in steps (warmup_steps).")
    bits = take(config, "quantization_bit", int)
    if bits in (4, 8):
        training["base_dtype"] = "nf4" if bits == 4 else "int8"
    mapped = {"lora_rank": "r", "lora_target": "target_modules", "additional_target": "modules_to_save", "cutoff_len": "max_seq_length",
              "quantization_bit": "base_dtype", "finetuning_type": "(LoRA)"}
    model = config.get("model_name_or_path")
    return Translation("LLaMA-Factory", SOURCE, lora, training, notes, mapped, model if isinstance(model, str) else None)
