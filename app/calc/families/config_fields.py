"""Read typed values out of a config.json dict, failing with the key and the reason."""

from __future__ import annotations

from typing import Any

from app.calc.errors import CalcInputError

LOC = "model_config"


def require_int(config: dict[str, Any], key: str, *, minimum: int = 1) -> int:
    """A required positive integer field."""
    if key not in config or config[key] is None:
        raise CalcInputError((LOC, key), f"{key} is required for model_type {config.get('model_type')!r}", "missing")
    return _checked_int(config, key, config[key], minimum)


def optional_int(config: dict[str, Any], key: str, default: int, *, minimum: int = 1) -> int:
    """An optional positive integer field; a missing or null value takes transformers' default."""
    value = config.get(key)
    if value is None:
        return default
    return _checked_int(config, key, value, minimum)


def optional_bool(config: dict[str, Any], key: str, default: bool) -> bool:
    """An optional boolean field; a missing or null value takes transformers' default."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise CalcInputError((LOC, key), f"{key} must be true or false, got {value!r}", "bool_type")
    return value


def _checked_int(config: dict[str, Any], key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalcInputError((LOC, key), f"{key} must be an integer, got {value!r}", "int_type")
    if value < minimum:
        raise CalcInputError((LOC, key), f"{key} must be at least {minimum}, got {value}", "greater_than_equal")
    if value > 10_000_000:
        raise CalcInputError((LOC, key), f"{key} of {value} is larger than any real model's", "less_than_equal")
    return value
