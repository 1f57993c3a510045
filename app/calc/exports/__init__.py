"""One configuration exported for the tools people train with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.calc.exports.adapter_config import adapter_config_json
from app.calc.exports.axolotl import axolotl_yaml
from app.calc.exports.context import ExportContext
from app.calc.exports.llama_factory import llama_factory_yaml
from app.calc.exports.peft_python import peft_python
from app.calc.exports.unsloth import unsloth_python


@dataclass(frozen=True)
class Exporter:
    """One export format."""

    key: str
    label: str
    language: str
    filename: str
    render: Callable[[ExportContext], str]


EXPORTERS: tuple[Exporter, ...] = (
    Exporter("peft", "PEFT (Python)", "python", "train_lora.py", peft_python),
    Exporter("adapter_config", "adapter_config.json", "json", "adapter_config.json", adapter_config_json),
    Exporter("unsloth", "Unsloth", "python", "unsloth_lora.py", unsloth_python),
    Exporter("axolotl", "Axolotl", "yaml", "axolotl.yaml", axolotl_yaml),
    Exporter("llama_factory", "LLaMA-Factory", "yaml", "llama_factory.yaml", llama_factory_yaml),
)


def render_all(context: ExportContext) -> list[tuple[Exporter, str]]:
    """Every export of one configuration."""
    return [(exporter, exporter.render(context)) for exporter in EXPORTERS]


__all__ = ["EXPORTERS", "ExportContext", "Exporter", "render_all"]
