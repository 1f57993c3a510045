"""Other tools' LoRA configs (mlx-lm, Axolotl, LLaMA-Factory, torchtune): recognised and translated to peft's fields.

Each dialect reads the tool's own keys and defaults, and says what does not carry over to peft. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from app.spec.errors import FieldError
from app.spec.text import parse_json

MAX_YAML_EVENTS = 100_000  # a config file has hundreds; bounds the work a paste can ask for


@dataclass
class Translation:
    """A config of another tool as peft's LoraConfig and transformers' TrainingArguments fields."""

    tool: str
    source: str  # where the tool documents these keys
    lora: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    mapped: dict[str, str] = field(default_factory=dict)  # the tool's key -> the peft/transformers field it became
    base_model: str | None = None
    last_layers: int | None = None  # adapt only the last N layers (mlx-lm's num_layers)

    def layers_for(self, depth: int) -> list[int] | None:
        """layers_to_transform for a model of `depth` layers, when only the last ones are adapted."""
        if self.last_layers is None or self.last_layers < 0 or self.last_layers >= depth:
            return None
        return list(range(depth - self.last_layers, depth))


def parse_config_text(text: str, loc: tuple[str, ...] = ("adapter_config",)) -> Any:
    """JSON (text starting with { or [), else YAML without anchors or aliases (which could expand without bound)."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return parse_json(text)
        except ValueError as error:
            raise FieldError(loc, str(error), "json_invalid") from None
    try:
        for count, event in enumerate(yaml.parse(text, Loader=yaml.SafeLoader)):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise FieldError(loc, "YAML anchors and aliases are not accepted here; paste the expanded file", "yaml")
            if count > MAX_YAML_EVENTS:
                raise FieldError(loc, "the YAML file is larger than any tool's config", "too_long")
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FieldError(loc, f"neither JSON nor YAML: {str(error).splitlines()[0]}", "json_invalid") from None


def recognise(config: dict[str, Any]) -> Translation | None:
    """The translation of a non-peft config, or None when no dialect claims it; a refused file raises FieldError."""
    from app.calc.dialects import axolotl, llama_factory, mlx, torchtune

    for dialect in (mlx, torchtune, llama_factory, axolotl):
        if dialect.claims(config):
            return dialect.translate(config)
    return None


def describe_unrecognised(config: dict[str, Any]) -> str | None:
    """What a file that is no adapter config at all looks like, for a 422; None if it may be a hand-written one."""
    if "model_type" in config and ("architectures" in config or "hidden_size" in config or "n_embd" in config):
        return "this is a model's config.json (it has model_type), not an adapter config: paste it as the model's config"
    if "weight_map" in config:
        return "this is a safetensors index (weight_map), not an adapter config"
    return None


def take(config: dict[str, Any], key: str, kinds: type | tuple[type, ...], default: Any = None,
         loc: tuple[str, ...] = ("adapter_config",)) -> Any:
    """One key of the tool's config, type-checked (booleans are not numbers); None and absent give `default`."""
    value = config.get(key)
    if value is None:
        return default
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, str) and float in wanted:
        try:
            value = float(value)  # PyYAML reads 1e-5 (no dot) as a string; the tools' own loaders read a number
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise FieldError((*loc, key), f"{key} must be {_kind_words(kinds)}, got {value!r}", "type_error")
    if not isinstance(value, kinds):
        raise FieldError((*loc, key), f"{key} must be {_kind_words(kinds)}, got {type(value).__name__}", "type_error")
    return value


def _kind_words(kinds: type | tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "a string", list: "a list", dict: "a mapping", bool: "true or false"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(dict.fromkeys(names.get(kind, kind.__name__) for kind in kinds))


def names(value: Any, key: str, loc: tuple[str, ...] = ("adapter_config",)) -> list[str]:
    """A list of module names (a comma-separated string is accepted, as some tools write them)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise FieldError((*loc, key), f"{key} must be a list of module names", "list_type")
