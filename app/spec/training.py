"""Training fields spelt as transformers' TrainingArguments, with its defaults; the hardware the calculator assumes; a job's narrowing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, StrictBool, StrictFloat, StrictInt, ValidationInfo, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from app.spec.base import SpecModel, spec_field
from app.spec.errors import FieldError, conflict, describe
from app.spec.numbers import finite_number

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay",
)
OPTIMIZERS = (
    "adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
    "adafactor", "sgd", "adagrad", "rmsprop",
)
BASE_DTYPES = ("bf16", "fp16", "fp32", "int8", "nf4", "fp4")
QUANTIZED = ("int8", "nf4", "fp4")
# Who runs the training loop: it decides how the loss is computed and in which dtype adapters and optimizer states live.
FRAMEWORKS = ("transformers", "unsloth", "torchtune", "litgpt", "axolotl")
MIB = 1024**2
# Total memory per GPU as the driver reports it (nvidia-smi / amd-smi "total", in MiB), by picker key: (label, MiB).
GPUS: dict[str, tuple[str, int]] = {
    "t4": ("T4 16 GB", 15_360), "l4": ("L4 24 GB", 23_034), "a10g": ("A10G 24 GB", 23_028),
    "rtx4090": ("RTX 4090 24 GB", 24_564), "a100-40": ("A100 40 GB", 40_960), "a100-80": ("A100 80 GB", 81_920),
    "h100-80": ("H100 80 GB", 81_559), "h200": ("H200 141 GB", 143_771), "mi300x": ("MI300X 192 GB", 196_592),
    "custom": ("custom size", 0),
}
MAX_SEED = 2**32 - 1  # numpy's seeds, which transformers.set_seed also sets, stop here


def _finite(value: Any, info: ValidationInfo) -> Any:
    """Refuse non-numbers, NaN, infinities and ints beyond a float before the union and the bounds see them."""
    return finite_number(value, info.field_name or "value")


Float = Annotated[StrictInt | StrictFloat, BeforeValidator(_finite)]


class TrainingSpec(SpecModel):
    """The training arguments Lorapedia models, named and defaulted as transformers 5's TrainingArguments (TRL's for sequences)."""

    learning_rate: Float = spec_field(
        5e-5, gt=0, le=1, page="learning_rate", placeholder="2e-4", help="Peak learning rate of the optimizer.")
    lr_scheduler_type: Literal[SCHEDULERS] = spec_field(  # type: ignore[valid-type]
        "linear", page="lr_scheduler_type", advanced=True, help="Shape of the learning-rate schedule after warmup.")
    warmup_steps: Float = spec_field(
        0, ge=0, page="warmup_steps", advanced=True,
        help="Linear warmup from 0 to learning_rate: a whole number of optimizer steps, or a fraction below 1 of the total.")
    weight_decay: Float = spec_field(0.0, ge=0, le=1, page="weight_decay", advanced=True, help="Decoupled weight decay of AdamW.")
    max_steps: StrictInt = spec_field(
        -1, ge=-1, page="max_steps", advanced=True, help="Optimizer steps to run; -1 runs num_train_epochs instead.")
    num_train_epochs: Float = spec_field(
        3.0, gt=0, le=100, page="num_train_epochs", advanced=True, help="Passes over the data when max_steps is -1.")
    per_device_train_batch_size: StrictInt = spec_field(
        8, ge=1, le=4096, page="per_device_train_batch_size", placeholder="8",
        help="Sequences per device in one forward and backward pass (a micro-batch).")
    gradient_accumulation_steps: StrictInt = spec_field(
        1, ge=1, le=100_000, page="gradient_accumulation_steps", placeholder="1", help="Micro-batches per optimizer step.")
    max_seq_length: StrictInt = spec_field(
        1024, ge=8, le=1_048_576, page="max_seq_length", placeholder="1024",
        help="Longest tokenised example, in tokens; longer ones are truncated (TRL's SFTConfig default).")
    packing: StrictBool = spec_field(False, page="packing", help="Concatenate short examples into full-length sequences.")
    seed: StrictInt = spec_field(
        42, ge=0, le=MAX_SEED, page="seed", advanced=True, help="Seed of the adapter initialisation, shuffling and dropout.")
    gradient_checkpointing: StrictBool = spec_field(
        False, page="gradient_checkpointing", help="Recompute activations in the backward pass to save memory.")
    max_grad_norm: Float = spec_field(
        1.0, ge=0, page="max_grad_norm", advanced=True, help="Gradient clipping threshold; 0 turns clipping off.")
    optim: Literal[OPTIMIZERS] = spec_field(  # type: ignore[valid-type]
        "adamw_torch_fused", page="optim", help="Optimizer, by its TrainingArguments name.")
    adam_beta1: Float = spec_field(0.9, ge=0, lt=1, page="adam_beta1", advanced=True, help="AdamW's decay rate of the gradient average.")
    adam_beta2: Float = spec_field(
        0.999, ge=0, lt=1, page="adam_beta2", advanced=True, help="AdamW's decay rate of the squared-gradient average.")
    adam_epsilon: Float = spec_field(
        1e-8, gt=0, le=1, page="adam_epsilon", advanced=True, help="AdamW's term added to the denominator for stability.")
    eval_steps: StrictInt | None = spec_field(
        None, ge=1, page="eval_steps", advanced=True,
        help="Evaluate on the held-out split every this many steps (and after the last); empty: after the last only.")

    @field_validator("max_steps")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise PydanticCustomError("max_steps_zero", "must be at least 1, or -1 to train for num_train_epochs")
        return value

    @field_validator("warmup_steps")
    @classmethod
    def _steps_or_fraction(cls, value: float) -> float:
        # transformers 5 reads a value below 1 as a fraction of the total steps and anything else as a count
        if value >= 1 and not float(value).is_integer():
            raise PydanticCustomError("warmup", f"must be a whole number of steps or a fraction below 1, got {describe(value)}")
        return float(value) if value < 1 else int(value)

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps a run takes: max_steps, or epochs over the (packed) training rows."""
        if self.max_steps > 0:
            return self.max_steps
        return max(1, math.ceil(self.num_train_epochs * train_rows / (self.per_device_train_batch_size * self.gradient_accumulation_steps)))

    def warmup_step_count(self, total_steps: int) -> int:
        """Warmup in optimizer steps, resolving a fraction against the total."""
        if isinstance(self.warmup_steps, float) and self.warmup_steps < 1:
            return math.ceil(self.warmup_steps * total_steps)
        return int(self.warmup_steps)


class HardwareSpec(SpecModel):
    """What the calculator assumes of the machine: how base weights are stored and how many devices share the batch."""

    base_dtype: Literal[BASE_DTYPES] = spec_field(  # type: ignore[valid-type]
        "bf16", page="load_in_4bit", label="base weights",
        help="How the frozen base weights are stored: bf16, fp16, fp32, int8 (load_in_8bit), nf4 or fp4 (load_in_4bit).")
    bnb_4bit_use_double_quant: StrictBool = spec_field(
        False, page="bnb_4bit_use_double_quant", help="Quantise the 4-bit block constants too (QLoRA).")
    devices: StrictInt = spec_field(
        1, ge=1, le=4096, page=None, label="devices (data parallel)", placeholder="1",
        help="Data-parallel devices; memory is per device.")
    framework: Literal[FRAMEWORKS] = spec_field(  # type: ignore[valid-type]
        "transformers", page="framework",
        help="What runs the training: sets how the loss is computed and the dtype of adapters and optimizer states.")
    typical_seq_length: StrictInt | None = spec_field(
        None, ge=1, le=1_048_576, page="typical_seq_length", placeholder="max_seq_length",
        help="Tokens in the longest sequence of a typical micro-batch (batches pad to their longest); empty: max_seq_length. Packed rows are always full.")
    gpu: Literal[tuple(GPUS)] | None = spec_field(  # type: ignore[valid-type]
        None, page="gpu", label="GPU", help="The GPU to check the estimate against; empty: no fit check.")
    gpu_memory_gib: Float | None = spec_field(
        None, gt=0, le=65_536, page="gpu", label="GPU memory (GiB, custom)", placeholder="24", kind="number",
        help="Memory of one GPU in GiB, for gpu = custom.")

    @model_validator(mode="after")
    def _custom_size(self) -> "HardwareSpec":
        if self.gpu == "custom" and self.gpu_memory_gib is None:
            raise conflict("gpu_memory_gib", "give the GPU's memory in GiB for a custom GPU", None, type(self).__name__)
        if self.gpu_memory_gib is not None and self.gpu != "custom":
            raise conflict("gpu_memory_gib", "applies to gpu = custom only; pick custom or leave it empty", self.gpu_memory_gib,
                           type(self).__name__)
        return self

    @property
    def gpu_bytes(self) -> int | None:
        """Memory of the picked GPU in bytes, or None when none is picked."""
        if self.gpu is None:
            return None
        if self.gpu == "custom":
            return int(float(self.gpu_memory_gib or 0) * 1024**3)
        return GPUS[self.gpu][1] * MIB

    @property
    def gpu_label(self) -> str | None:
        """The picked GPU's name, or None."""
        if self.gpu == "custom":
            return f"custom {self.gpu_memory_gib:g} GiB"
        return GPUS[self.gpu][0] if self.gpu else None


class CalcTrainingSpec(HardwareSpec, TrainingSpec):
    """The calculator's training input: the training arguments and the hardware."""

    @property
    def quantized(self) -> bool:
        """True for bitsandbytes int8 / 4-bit base weights."""
        return self.base_dtype in QUANTIZED

    @property
    def effective_batch_size(self) -> int:
        """Sequences per optimizer step over every device: batch x accumulation x devices."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.devices

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step at full sequence length (an upper bound with padding)."""
        return self.effective_batch_size * self.max_seq_length

    @property
    def batch_seq_length(self) -> int:
        """Tokens per row of the peak micro-batch: full rows when packed, else the typical longest (at most max_seq_length)."""
        if self.packing or self.typical_seq_length is None:
            return self.max_seq_length
        return min(self.typical_seq_length, self.max_seq_length)


# What a job trains with when the form leaves a field alone: a short demo, chosen by measurement (README, "Default job
# shape"). A SmolLM2 job of 12 steps x 4 rows, evaluated at steps 4, 8 and 12, took 35-38 s on the quiet 2-core CPU in
# bf16 and 81 s at load average 7 (41 s of steps, 15 s of evaluation, 24 s of before/after samples, 2 s of loading);
# 20 steps with five evals took 103 s. Every catalogue row fits in 128 tokens (lora-qa's longest is 122). At 2e-4 the eval loss moved 0.4% in
# 12 steps, too little to see on a chart; at 1e-3 it fell 2.7%.
JOB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3, "warmup_steps": 2, "max_steps": 12, "num_train_epochs": 1.0,
    "per_device_train_batch_size": 4, "max_seq_length": 128, "eval_steps": 4,
}
# Choices the trainer cannot run, and why.
JOB_REFUSED: dict[str, dict[str, str]] = {
    "lr_scheduler_type": {
        name: f"needs lr_scheduler_kwargs ({kwargs}), which jobs do not take" for name, kwargs in (
            ("cosine_with_min_lr", "min_lr or min_lr_rate"), ("cosine_warmup_with_min_lr", "min_lr or min_lr_rate"),
            ("warmup_stable_decay", "num_decay_steps"))
    },
    "optim": {
        name: "needs bitsandbytes and a CUDA GPU, which the worker does not use"
        for name in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
    },
}


def _job_field(name: str, info: FieldInfo) -> tuple[Any, FieldInfo]:
    """A TrainingSpec field with the job's default and, for a choice, only what the trainer runs."""
    annotation = info.annotation
    if name in JOB_REFUSED:
        annotation = Literal[tuple(choice for choice in annotation.__args__ if choice not in JOB_REFUSED[name])]  # type: ignore[misc]
    merged = FieldInfo.merge_field_infos(info, default=JOB_DEFAULTS.get(name, info.default))
    merged.annotation = annotation
    return annotation, merged


class _JobRefusals(TrainingSpec):
    @field_validator(*JOB_REFUSED, mode="before")
    @classmethod
    def _runnable(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and value.strip() in JOB_REFUSED[info.field_name]:
            allowed = ", ".join(cls.model_fields[info.field_name].annotation.__args__)
            raise PydanticCustomError(
                "unsupported_choice",
                f"{value.strip()} {JOB_REFUSED[info.field_name][value.strip()]}; choose one of {allowed}")
        return value


JobTrainingSpec = create_model(  # type: ignore[call-overload]
    "JobTrainingSpec",
    __base__=_JobRefusals,
    __doc__="A job's training arguments: TrainingSpec with a short demo's defaults and only the choices the trainer runs.",
    **{name: _job_field(name, info) for name, info in TrainingSpec.model_fields.items()
       if name in JOB_DEFAULTS or name in JOB_REFUSED},
)


@dataclass(frozen=True)
class InstanceLimits:
    """What one instance allows a job (from Settings): the one place those limits are checked."""

    max_steps: int
    max_seq_length: int
    max_batch_size: int
    max_accumulation_steps: int

    def check(self, training: TrainingSpec, train_rows: int | None = None) -> int | None:
        """Refuse with a FieldError naming the field and the limit; return the job's total steps when rows are known."""
        for name, limit in (("max_steps", self.max_steps), ("max_seq_length", self.max_seq_length),
                            ("per_device_train_batch_size", self.max_batch_size),
                            ("gradient_accumulation_steps", self.max_accumulation_steps)):
            if getattr(training, name) > limit:
                raise FieldError(("training", name), f"must be at most {limit:,} on this instance, got {getattr(training, name):,}")
        if train_rows is None:
            return None
        total = training.total_steps(train_rows)
        if total > self.max_steps:
            raise FieldError(("training", "num_train_epochs"),
                             f"{training.num_train_epochs:g} epochs over {train_rows:,} rows are {total:,} optimizer steps; "
                             f"at most {self.max_steps:,} on this instance")
        return total


__all__ = ["BASE_DTYPES", "FRAMEWORKS", "GPUS", "OPTIMIZERS", "SCHEDULERS", "CalcTrainingSpec", "HardwareSpec", "InstanceLimits",
           "JOB_DEFAULTS", "JobTrainingSpec", "TrainingSpec"]
