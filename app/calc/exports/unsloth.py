"""Export for Unsloth: FastLanguageModel.from_pretrained + get_peft_model."""

from __future__ import annotations

from app.calc.exports.context import ExportContext, call, py_literal

# get_peft_model keywords Unsloth documents; other LoraConfig fields are listed in a comment instead.
SUPPORTED = ("r", "target_modules", "lora_alpha", "lora_dropout", "bias", "use_rslora", "loftq_config", "modules_to_save", "layers_to_transform", "layers_pattern", "init_lora_weights")


def unsloth_python(context: ExportContext) -> str:
    """Unsloth's two calls, with every setting it accepts."""
    lora, training = context.lora, context.training
    targets = context.plain_targets or list(context.adapted_leaves)
    arguments = {
        "r": lora.r,
        "target_modules": targets,
        "lora_alpha": lora.lora_alpha,
        "lora_dropout": lora.lora_dropout,
        "bias": lora.bias,
        "use_gradient_checkpointing": "unsloth" if training.gradient_checkpointing else False,
        "random_state": 3407,
        "use_rslora": lora.use_rslora,
        "loftq_config": lora.loftq_config or None,
    }
    for key in ("modules_to_save", "layers_to_transform", "layers_pattern"):
        if getattr(lora, key) is not None:
            arguments[key] = getattr(lora, key)
    if lora.init_lora_weights is not True:
        arguments["init_lora_weights"] = lora.init_lora_weights
    unsupported = {
        key: value for key, value in lora.to_peft_kwargs().items() if key not in SUPPORTED
    }
    lines = [
        "# LoRA configuration exported from Lorapedia for Unsloth.",
        "from unsloth import FastLanguageModel",
        "",
        "model, tokenizer = " + call("FastLanguageModel.from_pretrained", {
            "model_name": context.model_name,
            "max_seq_length": training.max_seq_length,
            "load_in_4bit": training.base_dtype in ("nf4", "fp4"),
            "load_in_8bit": training.base_dtype == "int8",
        }),
        "model = " + call("FastLanguageModel.get_peft_model", arguments).replace("(\n", "(\n    model,\n", 1),
    ]
    if not context.plain_targets and lora.target_modules is not None:
        lines.append(f"# target_modules {py_literal(lora.target_modules)} expanded to the names it reaches in this model.")
    if unsupported:
        lines.append("# Not expressible through Unsloth's get_peft_model: " + ", ".join(f"{k}={py_literal(v)}" for k, v in unsupported.items()))
    return "\n".join(lines) + "\n"
