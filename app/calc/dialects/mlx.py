"""mlx-lm's adapter_config.json / lora_config.yaml (mlx_lm.lora): lora_parameters, num_layers, fine_tune_type."""

from __future__ import annotations

from typing import Any

from app.calc.dialects import Translation, names, take
from app.spec.errors import FieldError

SOURCE = "https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/tuner/utils.py (linear_to_lora_layers)"
DEFAULT_NUM_LAYERS = 16  # mlx_lm.lora's CONFIG_DEFAULTS
DEFAULT_LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}


def claims(config: dict[str, Any]) -> bool:
    """mlx-lm writes fine_tune_type and lora_parameters (older versions: lora_layers)."""
    return "peft_type" not in config and ("lora_parameters" in config or "fine_tune_type" in config
                                          or ("lora_layers" in config and "adapter_path" in config))


def translate(config: dict[str, Any]) -> Translation:
    """peft's equivalent of an mlx-lm LoRA/DoRA run."""
    kind = take(config, "fine_tune_type", str, "lora")
    if kind == "full":
        raise FieldError(("adapter_config", "fine_tune_type"), "this is an mlx-lm config for full fine-tuning "
                         "(fine_tune_type: full): it trains every weight and has no adapter to explain", "not_an_adapter")
    if kind not in ("lora", "dora"):
        raise FieldError(("adapter_config", "fine_tune_type"), f"mlx-lm's fine_tune_type is lora, dora or full, got {kind!r}",
                         "literal_error")
    params = take(config, "lora_parameters", dict, {})
    rank = take(params, "rank", int, DEFAULT_LORA["rank"], ("adapter_config", "lora_parameters"))
    scale = take(params, "scale", (int, float), DEFAULT_LORA["scale"], ("adapter_config", "lora_parameters"))
    dropout = take(params, "dropout", (int, float), DEFAULT_LORA["dropout"], ("adapter_config", "lora_parameters"))
    keys = params.get("keys")
    layers = take(config, "num_layers", int, None)
    if layers is None:
        layers = take(config, "lora_layers", int, DEFAULT_NUM_LAYERS)
    lora: dict[str, Any] = {"r": rank, "lora_alpha": scale * rank, "lora_dropout": dropout, "use_dora": kind == "dora"}
    notes = [
        f"mlx-lm's scale ({scale:g}) is the multiplier itself, where peft multiplies by lora_alpha / r: "
        f"lora_alpha = scale x r = {scale * rank:g} gives the same update.",
        "mlx-lm saves lora_a as (in, r) and lora_b as (r, out), transposed from peft's lora_A (r, in) and lora_B (out, r), "
        "under other names (adapters.safetensors): peft cannot load the weights without converting them.",
    ]
    if keys is None:
        lora["target_modules"] = "all-linear"
        notes.append("Without lora_parameters.keys mlx-lm adapts every Linear (and Embedding) inside the decoder layers; "
                     "all-linear is the nearest peft setting (it also reaches Linear layers outside them, such as a vision tower).")
    else:
        lora["target_modules"] = names(keys, "keys", ("adapter_config", "lora_parameters"))
    if layers < 0:
        notes.append("num_layers -1: every layer is adapted.")
        layers = None
    else:
        notes.append(f"mlx-lm adapts only the last {layers} layers (num_layers); peft's layers_to_transform lists them once "
                     "the model's depth is known.")
    training = {}
    for key, target, kinds in (("learning_rate", "learning_rate", (int, float)), ("batch_size", "per_device_train_batch_size", int),
                               ("iters", "max_steps", int), ("max_seq_length", "max_seq_length", int), ("seed", "seed", int),
                               ("grad_checkpoint", "gradient_checkpointing", bool)):
        value = take(config, key, kinds)
        if value is not None:
            training[target] = value
    if "lr_schedule" in config:
        notes.append("lr_schedule (an mlx.optimizers schedule) has no direct TrainingArguments equivalent; the default linear one is assumed.")
    mapped = {"lora_parameters.rank": "r", "lora_parameters.scale": "lora_alpha (x r)", "lora_parameters.dropout": "lora_dropout",
              "lora_parameters.keys": "target_modules", "fine_tune_type": "use_dora", "num_layers": "layers_to_transform",
              "batch_size": "per_device_train_batch_size", "iters": "max_steps", "grad_checkpoint": "gradient_checkpointing"}
    model = config.get("model")
    return Translation("mlx-lm", SOURCE, lora, training, notes, mapped, model if isinstance(model, str) else None, layers)
