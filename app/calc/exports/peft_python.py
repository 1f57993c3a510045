"""Export as a Python script: peft's LoraConfig and transformers' TrainingArguments."""

from __future__ import annotations

from app.calc.exports.context import ExportContext, call, lora_arguments, py_literal, schedule_settings


def peft_python(context: ExportContext) -> str:
    """LoraConfig + TrainingArguments (+ BitsAndBytesConfig for a quantised base)."""
    training = context.training
    lines = [
        "# LoRA configuration exported from Lorapedia (peft 0.21, transformers 5).",
        "import torch",
        "from peft import LoraConfig, get_peft_model",
        "from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TrainingArguments",
        "",
        f"model_name = {py_literal(context.model_name)}",
        f"max_seq_length = {training.max_seq_length}  # truncate when tokenising, or SFTConfig(max_length=...) with TRL",
        "",
    ]
    if training.base_dtype in ("nf4", "fp4"):
        lines += [
            "quantization_config = BitsAndBytesConfig(",
            "    load_in_4bit=True,",
            f"    bnb_4bit_quant_type={py_literal(training.base_dtype)},",
            f"    bnb_4bit_use_double_quant={training.bnb_4bit_use_double_quant},",
            "    bnb_4bit_compute_dtype=torch.bfloat16,",
            ")",
        ]
    elif training.base_dtype == "int8":
        lines.append("quantization_config = BitsAndBytesConfig(load_in_8bit=True)")
    else:
        lines.append("quantization_config = None")
    dtype = {"fp32": "torch.float32", "fp16": "torch.float16"}.get(training.base_dtype, "torch.bfloat16")
    lines += [
        "",
        "lora_config = " + call("LoraConfig", lora_arguments(context.lora)),
        "",
        "training_args = " + call("TrainingArguments", {
            "output_dir": "lora-output",
            "per_device_train_batch_size": training.per_device_train_batch_size,
            "gradient_accumulation_steps": training.gradient_accumulation_steps,
            "gradient_checkpointing": training.gradient_checkpointing,
            "optim": training.optim,
            "learning_rate": training.learning_rate,
            **schedule_settings(training, warmup_ratio=False),  # transformers 5 reads warmup_steps < 1 as a fraction
            "bf16": training.base_dtype in ("bf16", "nf4", "fp4", "int8"),
            "fp16": training.base_dtype == "fp16",
        }),
        "",
        "",
        "def load_model():",
        '    """The base model with the adapter attached (downloads the weights)."""',
        f"    model = AutoModelForCausalLM.from_pretrained(model_name, dtype={dtype}, quantization_config=quantization_config)",
        "    return get_peft_model(model, lora_config)",
        "",
    ]
    return "\n".join(lines)
