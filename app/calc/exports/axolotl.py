"""Export as an Axolotl YAML config (keys from Axolotl's config reference)."""

from __future__ import annotations

from typing import Any

import yaml

from app.calc.exports.context import SAFE_DUMPER, ExportContext, annotate, trainer_settings, unhandled_note
from app.calc.matching import is_all_linear

HANDLED = {"r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "fan_in_fan_out", "use_dora",
           "use_rslora", "layers_to_transform", "layers_pattern", "init_lora_weights", "loftq_config", "rank_pattern",
           "alpha_pattern"}
# src/axolotl/loaders/model.py hard-codes these for adapter: qlora; bnb_config_kwargs is applied on top of them.
AXOLOTL_4BIT = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}


def _integer(value: float) -> int:
    """Axolotl types lora_alpha and the pattern values as integers (src/axolotl/utils/schemas/peft.py)."""
    return int(round(value))


def axolotl_yaml(context: ExportContext) -> str:
    """adapter, lora_* and peft_* keys plus the training settings."""
    lora, training = context.lora, context.training
    notes: dict[str, str] = {}
    data: dict[str, Any] = {"base_model": context.model_name}
    data["adapter"] = "qlora" if training.base_dtype in ("nf4", "fp4") else "lora"
    if training.base_dtype in ("nf4", "fp4"):
        data["load_in_4bit"] = True
        wanted = {"bnb_4bit_quant_type": training.base_dtype, "bnb_4bit_use_double_quant": training.bnb_4bit_use_double_quant}
        if wanted != AXOLOTL_4BIT:
            data["bnb_config_kwargs"] = {key: value for key, value in wanted.items() if value != AXOLOTL_4BIT[key]}
            notes["bnb_config_kwargs"] = "Axolotl loads 4-bit as nf4 with double quantisation unless overridden here"
    if training.base_dtype == "int8":
        data["load_in_8bit"] = True
    data.update(lora_r=lora.r, lora_alpha=_integer(lora.lora_alpha), lora_dropout=float(lora.lora_dropout))
    if data["lora_alpha"] != lora.lora_alpha:
        notes["lora_alpha"] = f"Axolotl takes an integer; {lora.lora_alpha:g} rounded, so the scaling differs slightly"
    if is_all_linear(lora.target_modules):
        data["lora_target_linear"] = True
    elif lora.target_modules is not None:
        data["lora_target_modules"] = lora.target_modules
    else:
        data["lora_target_modules"] = list(context.adapted_leaves)
    if lora.modules_to_save:
        data["lora_modules_to_save"] = lora.modules_to_save
    for key, name in (("rank_pattern", "lora_rank_pattern"), ("alpha_pattern", "lora_alpha_pattern")):
        pattern = getattr(lora, key)
        if pattern:
            data[name] = {module: _integer(value) for module, value in pattern.items()}
            if data[name] != pattern:
                notes[name] = "Axolotl takes integer values; non-integers rounded"
    if lora.fan_in_fan_out:
        data["lora_fan_in_fan_out"] = True
    if lora.use_dora:
        data["peft_use_dora"] = True
    if lora.use_rslora:
        data["peft_use_rslora"] = True
    if lora.layers_to_transform is not None:
        layers = lora.layers_to_transform
        data["peft_layers_to_transform"] = [layers] if isinstance(layers, int) else layers
    if lora.layers_pattern is not None:
        pattern = lora.layers_pattern
        data["peft_layers_pattern"] = [pattern] if isinstance(pattern, str) else pattern
    if lora.init_lora_weights == "loftq":
        data["peft"] = {"loftq_config": {"loftq_bits": lora.loftq_config.get("loftq_bits", 4)}}
    elif lora.init_lora_weights is not True:
        data["peft_init_lora_weights"] = lora.init_lora_weights
    data.update(trainer_settings(training, sequence="sequence_len", batch="micro_batch_size", optimizer="optimizer",
                                 scheduler="lr_scheduler", epochs="num_epochs"))
    header = "# LoRA configuration exported from Lorapedia for Axolotl.\n" + unhandled_note(lora, HANDLED, "Axolotl")
    return header + annotate(yaml.dump(data, Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False), notes)
