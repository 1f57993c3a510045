"""Export as adapter_config.json, exactly as peft 0.21.2's save_pretrained writes it."""

from __future__ import annotations

import json

from app.calc.exports.context import ExportContext
from app.spec.lora import adapter_config_defaults


def adapter_config_json(context: ExportContext) -> str:
    """Every LoraConfig field with its value (defaults included), sorted, indented like peft's file."""
    data = adapter_config_defaults()
    data.update(context.lora.to_peft_kwargs(include_defaults=True))
    data["base_model_name_or_path"] = context.model_name
    return json.dumps(dict(sorted(data.items())), indent=2) + "\n"
