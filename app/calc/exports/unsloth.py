"""Export for Unsloth: FastLanguageModel.from_pretrained + get_peft_model, and TRL's SFTConfig for the trainer."""

from __future__ import annotations

from app.calc.exports.context import ExportContext, annotate, call, lora_arguments, py_literal, trainer_settings

# get_peft_model passes its **kwargs on to peft's LoraConfig (unsloth/models/llama.py), so every LoraConfig field is
# expressible except task_type, which Unsloth sets itself (CAUSAL_LM, or SEQ_CLS for classifiers).
SET_BY_UNSLOTH = ("task_type",)


def unsloth_python(context: ExportContext) -> str:
    """Unsloth's two calls with every LoRA setting, and the SFTConfig with the training settings."""
    lora, training = context.lora, context.training
    targets = context.plain_targets or list(context.adapted_leaves)
    arguments = {
        **{key: value for key, value in lora_arguments(lora).items() if key not in SET_BY_UNSLOTH},
        "target_modules": targets,
        "bias": lora.bias,
        "use_gradient_checkpointing": "unsloth" if training.gradient_checkpointing else False,
        "random_state": 3407,
    }
    notes = {}
    four_bit = training.base_dtype in ("nf4", "fp4")
    if four_bit and (training.base_dtype != "nf4" or not training.bnb_4bit_use_double_quant):
        notes["load_in_4bit"] = (f"Unsloth always loads 4-bit as nf4 with double quantisation; "
                                 f"{training.base_dtype}{'' if training.bnb_4bit_use_double_quant else ' without double quantisation'} "
                                 "cannot be expressed")
    settings = trainer_settings(training, sequence="max_length", batch="per_device_train_batch_size", optimizer="optim")
    settings["gradient_checkpointing"] = False  # Unsloth checkpoints itself (use_gradient_checkpointing above)
    lines = [
        "# LoRA configuration exported from Lorapedia for Unsloth (with TRL's SFTTrainer).",
        "from unsloth import FastLanguageModel",
        "from trl import SFTConfig",
        "",
        "model, tokenizer = " + call("FastLanguageModel.from_pretrained", {
            "model_name": context.model_name,
            "max_seq_length": training.max_seq_length,
            "load_in_4bit": four_bit,
            "load_in_8bit": training.base_dtype == "int8",
        }),
        "model = " + call("FastLanguageModel.get_peft_model", arguments).replace("(\n", "(\n    model,\n", 1),
    ]
    if not context.plain_targets and lora.target_modules is not None:
        lines.append(f"# target_modules {py_literal(lora.target_modules)} expanded to the names it reaches in this model.")
    lines += ["", "training_args = " + call("SFTConfig", {"output_dir": "lora-output", **settings}),
              "# SFTTrainer(model=model, processing_class=tokenizer, train_dataset=..., args=training_args).train()"]
    return annotate("\n".join(lines), notes) + "\n"
