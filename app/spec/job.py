"""A job: what POST /api/jobs accepts (JobCreate), what is stored and trained (JobSpec), what a run returns (RunResult)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.spec.base import SpecModel
from app.spec.lora import LoraSpec
from app.spec.training import JobTrainingSpec

MAX_ID_LENGTH = 300
PASTED_DATASET = "pasted"
# LoRA initialisations the trainer cannot run, and why.
UNSUPPORTED_INITS = {
    "loftq": "needs scipy, bitsandbytes and a CUDA GPU, which this trainer does not use",
    "eva": "needs a data-driven set-up (initialize_lora_eva_weights over a data loader) that this trainer does not run",
    "corda": "needs a data-driven set-up (preprocess_corda over calibration data) that this trainer does not run",
    "lora_ga": "needs a data-driven set-up (gradient estimation before training) that this trainer does not run",
}


class JobLoraSpec(LoraSpec):
    """LoraSpec narrowed to what the trainer runs: a causal LM, modules (not raw parameters), inits without extra set-up."""

    @field_validator("task_type")
    @classmethod
    def _causal_lm(cls, value: str | None) -> str | None:
        if value not in (None, "CAUSAL_LM"):
            raise PydanticCustomError("unsupported_task", f"jobs train causal language models only: task_type CAUSAL_LM, not {value}")
        return value

    @field_validator("init_lora_weights")
    @classmethod
    def _runnable_init(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value in UNSUPPORTED_INITS:
            raise PydanticCustomError(
                "unsupported_init", f"init_lora_weights {value!r} is not supported by jobs: it {UNSUPPORTED_INITS[value]}")
        return value

    @field_validator("target_parameters")
    @classmethod
    def _no_target_parameters(cls, value: list[str] | None) -> list[str] | None:
        if value:
            raise PydanticCustomError(
                "unsupported_field",
                "target_parameters (LoRA on raw nn.Parameter tensors, for MoE expert weights) is not supported by jobs: "
                "the trainer adapts modules only; use target_modules")
        return None


class JobCreate(SpecModel):
    """What POST /api/jobs and the job form accept: a model, one dataset, a LoRA config and training arguments."""

    model: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="A model jobs can train: GET /api/models lists them (`trainable`).")
    dataset: str | None = Field(None, max_length=MAX_ID_LENGTH, description="Id of a dataset from GET /api/datasets.")
    dataset_jsonl: str | None = Field(None, description="Your own JSONL: prompt/response pairs or chat messages, one per line.")
    lora: JobLoraSpec = Field(default_factory=JobLoraSpec, description="LoraConfig fields, named as peft names them.")
    training: JobTrainingSpec = Field(default_factory=JobTrainingSpec, description="TrainingArguments fields.")  # type: ignore[valid-type]

    @field_validator("dataset", "dataset_jsonl")
    @classmethod
    def _blank_is_none(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None or value.strip() or not (info.context or {}).get("text") else None

    @model_validator(mode="after")
    def _one_dataset(self) -> "JobCreate":
        if (self.dataset is None) == (self.dataset_jsonl is None):
            raise ValueError("give exactly one of dataset (an id) or dataset_jsonl (pasted rows)")
        return self


class JobSpec(SpecModel):
    """A queued job as stored in Job.config and handed to the trainer; pasted rows travel beside it, never in the config."""

    model: str = Field(max_length=MAX_ID_LENGTH, description="The model id.")
    dataset: str = Field(max_length=MAX_ID_LENGTH, description=f"A catalogue dataset id, or {PASTED_DATASET!r} for pasted rows.")
    lora: JobLoraSpec
    training: JobTrainingSpec  # type: ignore[valid-type]
    dataset_rows: list[dict[str, Any]] | None = Field(None, exclude=True, description="The pasted rows, validated (not stored here).")


class RunResult(BaseModel):
    """What a training run reports when it ends."""

    status: Literal["succeeded", "cancelled"]
    device: str
    trainable_params: int
    total_params: int
    peak_memory_bytes: int | None = None
    baseline_memory_bytes: int | None = None
    samples_before: list[dict[str, Any]] = Field(default_factory=list)
    samples_after: list[dict[str, Any]] = Field(default_factory=list)
    adapter_dir: str | None = None
    total_steps: int
    steps_completed: int
    final_train_loss: float | None = None
    final_eval_loss: float | None = None
    final_exact_match: float | None = None
    phase_seconds: dict[str, float] = Field(
        default_factory=dict, description="Wall seconds per phase: load, tokenise, wrap, train (with its evals), eval, save, samples.")
