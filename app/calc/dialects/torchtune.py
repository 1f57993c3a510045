"""torchtune's recipe YAML: model._component_ lora_*, lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output."""

from __future__ import annotations

from typing import Any

from app.calc.dialects import Translation, names, take
from app.spec.errors import FieldError

SOURCE = "https://docs.pytorch.org/torchtune/stable/tutorials/lora_finetune.html"
# torchtune's module names -> the Hugging Face names of the same layers (its checkpointer converts between them)
ATTENTION_NAMES = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj"}
MLP_NAMES = ["gate_proj", "down_proj", "up_proj"]  # torchtune's w1, w2, w3
LOC = ("adapter_config", "model")


def claims(config: dict[str, Any]) -> bool:
    """A torchtune recipe has a `model` mapping built by a _component_."""
    model = config.get("model")
    return "peft_type" not in config and isinstance(model, dict) and "_component_" in model


def translate(config: dict[str, Any]) -> Translation:
    """peft's equivalent of a torchtune LoRA recipe."""
    model = config["model"]
    component = take(model, "_component_", str, "", ("adapter_config",))
    if "lora" not in component.rpartition(".")[2]:
        raise FieldError((*LOC, "_component_"), f"this torchtune recipe builds {component or 'a model'} without LoRA "
                         "(full fine-tuning): there is no adapter to explain", "not_an_adapter")
    r = take(model, "lora_rank", int, 8, LOC)
    lora: dict[str, Any] = {"r": r, "lora_alpha": take(model, "lora_alpha", (int, float), 16, LOC),
                            "lora_dropout": take(model, "lora_dropout", (int, float), 0.0, LOC)}
    attention = names(model.get("lora_attn_modules", []), "lora_attn_modules", LOC)
    unknown = [name for name in attention if name not in ATTENTION_NAMES]
    if unknown:
        raise FieldError((*LOC, "lora_attn_modules"), f"torchtune's attention modules are q_proj, k_proj, v_proj and "
                         f"output_proj; got {', '.join(unknown)}", "literal_error")
    targets = [ATTENTION_NAMES[name] for name in attention]
    if take(model, "apply_lora_to_mlp", bool, False, LOC):
        targets += MLP_NAMES
    if take(model, "apply_lora_to_output", bool, False, LOC):
        targets.append("lm_head")
    lora["target_modules"] = targets
    if take(model, "use_dora", bool, False, LOC):
        lora["use_dora"] = True
    notes = ["torchtune names layers its own way: output_proj is o_proj, w1/w2/w3 are gate_proj/down_proj/up_proj and "
             "output is lm_head in the Hugging Face model; its adapter checkpoint in peft format uses the Hugging Face names."]
    training: dict[str, Any] = {}
    optimizer = config.get("optimizer") if isinstance(config.get("optimizer"), dict) else {}
    for key, field_name in (("lr", "learning_rate"), ("weight_decay", "weight_decay")):
        value = take(optimizer, key, (int, float), None, ("adapter_config", "optimizer"))
        if value is not None:
            training[field_name] = value
    for key, field_name, kinds in (("batch_size", "per_device_train_batch_size", int), ("epochs", "num_train_epochs", int),
                                   ("gradient_accumulation_steps", "gradient_accumulation_steps", int), ("seed", "seed", int),
                                   ("enable_activation_checkpointing", "gradient_checkpointing", bool)):
        value = take(config, key, kinds)
        if value is not None:
            training[field_name] = value
    scheduler = config.get("lr_scheduler") if isinstance(config.get("lr_scheduler"), dict) else {}
    if isinstance(scheduler.get("num_warmup_steps"), int):
        training["warmup_steps"] = scheduler["num_warmup_steps"]
        if "cosine" in str(scheduler.get("_component_", "")):
            training["lr_scheduler_type"] = "cosine"
    if "qlora" in component.rpartition(".")[2] or take(model, "quantize_base", bool, False, LOC):
        training["base_dtype"] = "nf4"
        notes.append("QLoRA: torchtune quantises the base weights to NF4 (torchao); the adapter stays in higher precision.")
    mapped = {"model.lora_rank": "r", "model.lora_alpha": "lora_alpha", "model.lora_attn_modules": "target_modules",
              "model.apply_lora_to_mlp": "target_modules", "model.apply_lora_to_output": "target_modules (lm_head)",
              "optimizer.lr": "learning_rate", "batch_size": "per_device_train_batch_size", "epochs": "num_train_epochs"}
    return Translation("torchtune", SOURCE, lora, training, notes, mapped, None)
