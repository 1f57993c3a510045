"""Request schemas of a job: TrainingSpec and JobCreate (LoRA fields come from app.calc.spec)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.training.spec import OPTIMIZERS, SCHEDULERS

from app.calc.spec import LoraSpec

# the choices the trainer implements (app/training/spec.py is pure: importing it loads no torch)
SchedulerName = Literal[SCHEDULERS]
OptimizerName = Literal[OPTIMIZERS]


class TrainingSpec(BaseModel):
    """Training arguments of a job, named as transformers.TrainingArguments names them; defaults suit a short demo."""

    # strict: "8" is not 8 in the API; the HTML form converts its strings before validating
    model_config = ConfigDict(extra="forbid", strict=True)

    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate of the optimizer.")
    lr_scheduler_type: SchedulerName = Field("linear", description="Shape of the learning-rate schedule after warmup.")
    warmup_steps: int = Field(2, ge=0, description="Optimizer steps of linear warmup from 0 to learning_rate.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="Decoupled weight decay of AdamW.")
    max_steps: int = Field(30, ge=-1, description="Optimizer steps to run; -1 runs num_train_epochs instead.")
    num_train_epochs: float = Field(1.0, gt=0, le=100, description="Passes over the data when max_steps is -1.")
    per_device_train_batch_size: int = Field(4, ge=1, le=256, description="Examples per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256, description="Micro-batches per optimizer step.")
    max_seq_length: int = Field(256, ge=8, description="Longest tokenised example, in tokens; longer ones are truncated.")
    packing: bool = Field(False, description="Concatenate short examples into full-length sequences.")
    seed: int = Field(42, ge=0, description="Seed of the adapter initialisation, shuffling and dropout.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass to save memory.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping threshold; 0 turns clipping off.")
    optim: OptimizerName = Field("adamw_torch_fused", description="Optimizer (TrainingArguments' default).")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW's decay rate of the gradient average.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW's decay rate of the squared-gradient average.")
    adam_epsilon: float = Field(1e-8, gt=0, le=1, description="AdamW's term added to the denominator for stability.")
    eval_steps: int | None = Field(10, ge=1, description="Evaluate on the held-out split every this many steps (and after the last); empty: after the last only.")

    @field_validator("learning_rate", "weight_decay", "num_train_epochs", "max_grad_norm", "adam_epsilon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
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
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoraConfig fields, named as peft names them.")
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @model_validator(mode="after")
    def _one_dataset(self) -> "JobCreate":
        if (self.dataset is None) == (self.dataset_jsonl is None):
            raise ValueError("give exactly one of dataset (an id) or dataset_jsonl (pasted rows)")
        return self
