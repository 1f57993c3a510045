"""Export as a LLaMA-Factory training YAML (keys from its LoraArguments and ModelArguments)."""

from __future__ import annotations

from typing import Any

import yaml

from app.calc.exports.context import SAFE_DUMPER, ExportContext, trainer_settings, unhandled_note
from app.calc.matching import is_all_linear

HANDLED = {"r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_dora", "use_rslora", "init_lora_weights"}


def llama_factory_yaml(context: ExportContext) -> str:
    """stage sft with finetuning_type lora; lists become comma-separated strings as LLaMA-Factory expects."""
    lora, training = context.lora, context.training
    if is_all_linear(lora.target_modules):
        target = "all"
    else:
        target = ",".join(context.plain_targets or context.adapted_leaves)
    data: dict[str, Any] = {
        "model_name_or_path": context.model_name,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": lora.r,
        "lora_alpha": lora.lora_alpha,
        "lora_dropout": float(lora.lora_dropout),
        "lora_target": target,
    }
    if lora.modules_to_save:
        data["additional_target"] = ",".join(lora.modules_to_save)
    if lora.use_rslora:
        data["use_rslora"] = True
    if lora.use_dora:
        data["use_dora"] = True
    if isinstance(lora.init_lora_weights, str) and lora.init_lora_weights.startswith("pissa"):
        data["pissa_init"] = True
    if training.base_dtype in ("nf4", "fp4", "int8"):
        data["quantization_bit"] = 8 if training.base_dtype == "int8" else 4
        data["quantization_method"] = "bnb"
        if training.base_dtype != "int8":
            data["quantization_type"] = training.base_dtype
            data["double_quantization"] = training.bnb_4bit_use_double_quant
    data.update(dataset="your_dataset", template="default")
    data.update(trainer_settings(training, sequence="cutoff_len", batch="per_device_train_batch_size", optimizer="optim"))
    data["output_dir"] = "saves/lora"
    header = "# LoRA configuration exported from Lorapedia for LLaMA-Factory (llamafactory-cli train <file>).\n"
    if not context.plain_targets and target != "all":
        header += f"# lora_target lists the modules {lora.target_modules!r} reaches in this model.\n"
    header += unhandled_note(lora, HANDLED, "LLaMA-Factory")
    return header + yaml.dump(data, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False)
