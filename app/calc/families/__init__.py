"""Architecture families: model_type -> builder of the module tree, and the entry point from config.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from app.calc.architecture import Architecture
from app.spec.errors import FieldError, check_nesting, describe
from app.calc.families.gpt2 import build_gpt2
from app.calc.families.llama_like import VARIANTS, build_llama_like
from app.calc.families.mixtral import build_mixtral
from app.calc.families.phi3 import build_phi3

BUILDERS: dict[str, Callable[[dict[str, Any]], Architecture]] = {
    **{model_type: build_llama_like for model_type in VARIANTS},
    "phi3": build_phi3,
    "mixtral": build_mixtral,
    "gpt2": build_gpt2,
}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(BUILDERS))


def architecture_from_config(config: dict[str, Any]) -> Architecture:
    """The architecture a config.json describes; an unsupported model_type names the supported ones."""
    if not isinstance(config, dict):
        raise FieldError(("model_config",), "model_config must be a JSON object (the contents of config.json)", "dict_type")
    model_type = config.get("model_type")
    if model_type is None:
        raise FieldError(("model_config", "model_type"), "config.json has no model_type", "missing")
    if not isinstance(model_type, str):
        raise FieldError(
            ("model_config", "model_type"), f"model_type must be a string such as \"llama\", got {describe(model_type)}",
            "string_type",
        )
    if model_type not in BUILDERS:
        raise FieldError(
            ("model_config", "model_type"),
            f"model_type {describe(model_type)} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
            "unsupported_model_type",
        )
    check_nesting(config, ("model_config",), "model_config")
    return _cached_architecture(json.dumps(config, sort_keys=True, default=str))


@lru_cache(maxsize=64)
def _cached_architecture(config_json: str) -> Architecture:
    config = json.loads(config_json)
    return BUILDERS[config["model_type"]](config)
