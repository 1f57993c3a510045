"""Read typed values out of a config.json dict, failing with the key and the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.spec.errors import FieldError, describe

LOC = "model_config"
MAX_SIZE = 10_000_000  # widths, vocabularies, heads: above every published model by far
SIZE_REASON = "larger than any real model's"
# The module tree is built layer by layer, so the layer count bounds the work a request can ask for.
MAX_LAYERS = 1_024
LAYERS_REASON = "deeper than any published model (they have at most a few hundred layers)"


def require_int(config: dict[str, Any], key: str, *, minimum: int = 1, maximum: int = MAX_SIZE,
                reason: str = SIZE_REASON) -> int:
    """A required positive integer field, at most `maximum` (`reason` says why)."""
    if key not in config or config[key] is None:
        raise FieldError((LOC, key), f"{key} is required for model_type {config.get('model_type')!r}", "missing")
    return _checked_int(key, config[key], minimum, maximum, reason)


def optional_int(config: dict[str, Any], key: str, default: int, *, minimum: int = 1, maximum: int = MAX_SIZE,
                 reason: str = SIZE_REASON) -> int:
    """An optional positive integer field; a missing or null value takes transformers' default."""
    value = config.get(key)
    if value is None:
        return default
    return _checked_int(key, value, minimum, maximum, reason)


def optional_bool(config: dict[str, Any], key: str, default: bool) -> bool:
    """An optional boolean field; a missing or null value takes transformers' default."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FieldError((LOC, key), f"{key} must be true or false, got {describe(value)}", "bool_type")
    return value


def optional_str(config: dict[str, Any], key: str) -> str | None:
    """An optional string field (an activation name...); None when missing or null."""
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise FieldError((LOC, key), f"{key} must be a string, got {describe(value)}", "string_type")
    return value


def _checked_int(key: str, value: Any, minimum: int, maximum: int, reason: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError((LOC, key), f"{key} must be an integer, got {describe(value)}", "int_type")
    if value < minimum:
        raise FieldError((LOC, key), f"{key} must be at least {minimum}, got {describe(value)}", "greater_than_equal")
    if value > maximum:
        raise FieldError(
            (LOC, key), f"{key} of {describe(value)} is {reason}; the most accepted is {maximum:,}", "less_than_equal"
        )
    return value


@dataclass(frozen=True)
class DecoderSizes:
    """The sizes every decoder family reports on its Architecture."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tie: bool


def decoder_sizes(config: dict[str, Any], *, head_dim_default: int | None = None, tie_default: bool = False) -> DecoderSizes:
    """Sizes under transformers' usual names (hidden_size, num_hidden_layers...), with its defaults."""
    hidden = require_int(config, "hidden_size")
    intermediate = require_int(config, "intermediate_size")
    layers = require_int(config, "num_hidden_layers", maximum=MAX_LAYERS, reason=LAYERS_REASON)
    heads = require_int(config, "num_attention_heads")
    vocab = require_int(config, "vocab_size")
    kv_heads = optional_int(config, "num_key_value_heads", heads)
    if head_dim_default is None and config.get("head_dim") is None and heads > hidden:
        raise FieldError(
            (LOC, "num_attention_heads"),
            f"num_attention_heads ({heads}) is more than hidden_size ({hidden}): without a head_dim each head would "
            "get hidden_size // num_attention_heads = 0 dimensions",
            "less_than_equal",
        )
    head_dim = optional_int(config, "head_dim", head_dim_default or hidden // heads)
    tie = optional_bool(config, "tie_word_embeddings", tie_default)
    return DecoderSizes(hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tie)
