"""Request schemas of a job: TrainingSpec, JobLoraSpec and JobCreate, narrowed to what the trainer runs."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.calc.spec import LoraSpec
from app.jobs.spec import OPTIMIZERS, SCHEDULERS
from app.jobs.spec import TRAINING_RANGES as RANGES

# Schedulers that transformers builds without lr_scheduler_kwargs; jobs take no kwargs, so the others are refused.
SCHEDULERS_NEEDING_KWARGS = {
    "cosine_with_min_lr": "min_lr or min_lr_rate",
    "cosine_warmup_with_min_lr": "min_lr or min_lr_rate",
    "warmup_stable_decay": "num_decay_steps",
}
JOB_SCHEDULERS = tuple(name for name in SCHEDULERS if name not in SCHEDULERS_NEEDING_KWARGS)
# LoRA initialisations the trainer cannot run, and why.
UNSUPPORTED_INITS = {
    "loftq": "needs scipy, bitsandbytes and a CUDA GPU, which this trainer does not use",
    "eva": "needs a data-driven set-up (initialize_lora_eva_weights over a data loader) that this trainer does not run",
    "corda": "needs a data-driven set-up (preprocess_corda over calibration data) that this trainer does not run",
    "lora_ga": "needs a data-driven set-up (gradient estimation before training) that this trainer does not run",
}

# the choices the trainer implements (app/jobs/spec.py is pure: importing it loads no torch)
SchedulerName = Literal[JOB_SCHEDULERS]
OptimizerName = Literal[OPTIMIZERS]


class JobLoraSpec(LoraSpec):
    """LoraSpec narrowed to what the trainer runs: a causal LM, initialisations that need no extra set-up, target_modules."""

    task_type: Literal["CAUSAL_LM"] | None = Field(None, description="The model head peft wraps: jobs train causal LMs only.")
    target_parameters: list[str] | None = Field(
        None, description="nn.Parameter names to adapt (MoE experts): not supported by jobs; use target_modules.")

    @field_validator("init_lora_weights")
    @classmethod
    def _runnable_init(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value in UNSUPPORTED_INITS:
            raise PydanticCustomError(
                "unsupported_init", f"init_lora_weights {value!r} is not supported by jobs: it {UNSUPPORTED_INITS[value]}",
            )
        return value

    @field_validator("target_parameters")
    @classmethod
    def _no_target_parameters(cls, value: list[str] | None) -> list[str] | None:
        if value:
            raise PydanticCustomError(
                "unsupported_field",
                "target_parameters (LoRA on raw nn.Parameter tensors, for MoE expert weights) is not supported by jobs: "
                "the trainer adapts modules only; use target_modules",
            )
        return None


class TrainingSpec(BaseModel):
    """Training arguments of a job, named as transformers.TrainingArguments names them; defaults suit a short demo."""

    # strict: "8" is not 8 in the API; the HTML form converts its strings before validating
    model_config = ConfigDict(extra="forbid", strict=True)

    learning_rate: Annotated[float, RANGES["learning_rate"]] = Field(2e-4, description="Peak learning rate of the optimizer.")
    lr_scheduler_type: SchedulerName = Field("linear", description="Shape of the learning-rate schedule after warmup.")
    warmup_steps: Annotated[int, RANGES["warmup_steps"]] = Field(2, description="Optimizer steps of linear warmup from 0 to learning_rate.")
    weight_decay: Annotated[float, RANGES["weight_decay"]] = Field(0.0, description="Decoupled weight decay of AdamW.")
    max_steps: Annotated[int, RANGES["max_steps"]] = Field(30, description="Optimizer steps to run; -1 runs num_train_epochs instead.")
    num_train_epochs: Annotated[float, RANGES["num_train_epochs"]] = Field(1.0, description="Passes over the data when max_steps is -1.")
    per_device_train_batch_size: Annotated[int, RANGES["per_device_train_batch_size"]] = Field(4, description="Examples per micro-batch.")
    gradient_accumulation_steps: Annotated[int, RANGES["gradient_accumulation_steps"]] = Field(1, description="Micro-batches per optimizer step.")
    max_seq_length: Annotated[int, RANGES["max_seq_length"]] = Field(256, description="Longest tokenised example, in tokens; longer ones are truncated.")
    packing: bool = Field(False, description="Concatenate short examples into full-length sequences.")
    seed: Annotated[int, RANGES["seed"]] = Field(42, description="Seed of the adapter initialisation, shuffling and dropout.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass to save memory.")
    max_grad_norm: Annotated[float, RANGES["max_grad_norm"]] = Field(1.0, description="Gradient clipping threshold; 0 turns clipping off.")
    optim: OptimizerName = Field("adamw_torch_fused", description="Optimizer (TrainingArguments' default).")
    adam_beta1: Annotated[float, RANGES["adam_beta1"]] = Field(0.9, description="AdamW's decay rate of the gradient average.")
    adam_beta2: Annotated[float, RANGES["adam_beta2"]] = Field(0.999, description="AdamW's decay rate of the squared-gradient average.")
    adam_epsilon: Annotated[float, RANGES["adam_epsilon"]] = Field(1e-8, description="AdamW's term added to the denominator for stability.")
    eval_steps: Annotated[int, RANGES["eval_steps"]] | None = Field(10, description="Evaluate on the held-out split every this many steps (and after the last); empty: after the last only.")

    @field_validator("learning_rate", "weight_decay", "num_train_epochs", "max_grad_norm", "adam_epsilon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("lr_scheduler_type", mode="before")
    @classmethod
    def _scheduler_without_kwargs(cls, value: Any) -> Any:
        if isinstance(value, str) and value in SCHEDULERS_NEEDING_KWARGS:
            raise PydanticCustomError(
                "unsupported_scheduler",
                f"{value} needs lr_scheduler_kwargs ({SCHEDULERS_NEEDING_KWARGS[value]}), which jobs do not take; "
                f"choose one of {', '.join(JOB_SCHEDULERS)}",
            )
        return value

    @field_validator("max_steps")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be at least 1, or -1 to train for num_train_epochs")
        return value


class JobCreate(BaseModel):
    """What POST /api/jobs and the job form accept: a model, one dataset, a LoRA config and training arguments."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300, description="tiny-llama, smollm2-135m-instruct, or a model the operator allows.")
    dataset: str | None = Field(None, description="Id of a dataset from GET /api/datasets.")
    dataset_jsonl: str | None = Field(None, description="Your own JSONL: prompt/response pairs or chat messages, one per line.")
    lora: JobLoraSpec = Field(default_factory=JobLoraSpec, description="LoraConfig fields, named as peft names them.")
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @model_validator(mode="after")
    def _one_dataset(self) -> "JobCreate":
        if (self.dataset is None) == (self.dataset_jsonl is None):
            raise ValueError("give exactly one of dataset (an id) or dataset_jsonl (pasted rows)")
        return self
