"""TrainingSpec: the training settings that change memory and tokens per step, with transformers' defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from app.calc.numbers import finite_number

BaseDtype = Literal["fp32", "bf16", "fp16", "int8", "nf4", "fp4"]
Optimizer = Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd"
]
QUANTIZED = ("int8", "nf4", "fp4")


class TrainingSpec(BaseModel):
    """Batch, sequence, precision and optimizer: what a memory estimate needs."""

    model_config = ConfigDict(extra="forbid")

    per_device_train_batch_size: StrictInt = Field(8, ge=1, le=4096, description="Sequences per device per forward pass.")
    gradient_accumulation_steps: StrictInt = Field(1, ge=1, le=100_000, description="Forward/backward passes per optimizer step.")
    max_seq_length: StrictInt = Field(1024, ge=1, le=1_048_576, description="Tokens per sequence (padded or packed).")
    gradient_checkpointing: StrictBool = Field(False, description="Recompute activations in the backward pass.")
    base_dtype: BaseDtype = Field("bf16", description="How the frozen base weights are stored: fp32, bf16, fp16, int8, nf4, fp4.")
    bnb_4bit_use_double_quant: StrictBool = Field(False, description="Quantise the 4-bit block constants too (QLoRA).")
    optimizer: Optimizer = Field("adamw_torch", description="transformers' optim name.")
    devices: StrictInt = Field(1, ge=1, le=4096, description="Data-parallel devices; memory is per device.")
    learning_rate: StrictFloat | StrictInt | None = Field(
        None, description="Only used for lints.", json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 1}
    )

    @field_validator("learning_rate")
    @classmethod
    def _finite_rate(cls, value: float | None) -> float | None:
        rule = "above 0 and below 1"
        if value is not None and not 0 < finite_number(value, "learning_rate", rule) < 1:
            raise PydanticCustomError("lr_range", f"learning_rate must be {rule}, got {value}")
        return value

    @property
    def quantized(self) -> bool:
        """True for bitsandbytes int8 / 4-bit base weights."""
        return self.base_dtype in QUANTIZED

    @property
    def effective_batch_size(self) -> int:
        """Sequences per optimizer step: batch x accumulation x devices."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.devices

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step at full sequence length (an upper bound with padding)."""
        return self.effective_batch_size * self.max_seq_length
