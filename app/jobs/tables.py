"""SQLModel tables for jobs, their metric points and their adapter archives."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.spec import JobSpec

# Keys older versions stored in Job.config that JobSpec no longer has: read past, never an error.
LEGACY_CONFIG_KEYS = {"prediction"}
LEGACY_TRAINING_KEYS = {"sample_max_new_tokens", "lr_scheduler_kwargs"}


def utcnow() -> datetime:
    """Now, in UTC (leases compare clocks across hosts, which are assumed NTP-synchronised)."""
    return datetime.now(UTC)


class JobStatus(StrEnum):
    """Where a job is in its life."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


FINISHED_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.interrupted})


class JobBase(SQLModel):
    """What a job was asked to do."""

    model: str = Field(description="Model id: tiny-llama, smollm2-135m-instruct or an allowed Hugging Face id.")
    dataset: str = Field(description="Dataset id from the catalogue, or 'pasted' for the user's own JSONL.")
    prediction_basis: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="What the calculator's prediction assumed (base dtype, optimizer).")


class JobFigures(SQLModel):
    """What a job measured, beside what the calculator predicted for its config."""

    device: str | None = Field(default=None, description="cpu, cuda or mps: where the job trained.")
    total_steps: int | None = Field(default=None, description="Optimizer steps the job will run.")
    trainable_params: int | None = Field(default=None, sa_type=BigInteger, description="Measured by peft.")
    total_params: int | None = Field(default=None, sa_type=BigInteger, description="Base plus adapter, measured.")
    peak_memory_bytes: int | None = Field(default=None, sa_type=BigInteger, description="RSS on CPU, max allocated on CUDA.")
    predicted_trainable_params: int | None = Field(default=None, sa_type=BigInteger, description="app.calc's closed form.")
    predicted_memory_bytes: int | None = Field(default=None, sa_type=BigInteger, description="app.calc's estimate.")
    predicted_seconds: float | None = Field(default=None, description="Estimated training time: FLOPs per token over the configured throughput.")
    final_train_loss: float | None = None
    final_eval_loss: float | None = None
    final_exact_match: float | None = Field(default=None, description="Held-out exact match (0-1) after the last step; synthetic task only.")
    samples_before: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON, description="Answers before training.")
    samples_after: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON, description="Answers after training.")


class Experiment(SQLModel, table=True):
    """A sweep: one job field over a few values, everything else as in the base job; its jobs point back at it."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(description="What the experiment is called; by default the swept field.")
    field: str = Field(description="The swept job field, as app.spec names it.")
    values: list[Any] = Field(sa_type=JSON, description="The swept values, typed (one job each, in this order).")
    base: dict[str, Any] = Field(sa_type=JSON, description="The base JobSpec as JSON; each job replaces the swept field.")
    created_at: datetime = Field(default_factory=utcnow)


class Job(JobBase, JobFigures, table=True):
    """One fine-tuning run, from queued to a final status; the only record web and worker share."""

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int | None = Field(default=None, foreign_key="experiment.id", index=True,
                                      description="The sweep this job is one value of, if any.")
    status: JobStatus = Field(default=JobStatus.queued, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = Field(default=None, description="host:pid:nonce of the worker that claimed the job.")
    heartbeat_at: datetime | None = None
    lease_expires_at: datetime | None = Field(default=None, index=True)
    cancel_requested: bool = False
    error: str | None = None
    adapter_path: str | None = Field(default=None, description="Where the worker saved the adapter, on its own host.")
    dataset_rows: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON, description="Pasted rows, validated.")
    config: dict[str, Any] = Field(sa_type=JSON, description="The JobSpec as JSON, less pasted rows.")
    owner_id: int | None = Field(default=None, index=True, description="The account that created the job; none when accounts are off.")
    shared: bool = Field(default=False, description="The owner lets everyone see the job's page and results.")
    retry_of: int | None = Field(default=None, description="The job this one retries with the same spec.")

    def spec(self, with_rows: bool = False) -> JobSpec:
        """The stored JobSpec (keys of older versions read past); pasted rows included when asked."""
        config = {key: value for key, value in self.config.items() if key not in LEGACY_CONFIG_KEYS}
        if isinstance(config.get("training"), dict):
            config["training"] = {key: value for key, value in config["training"].items() if key not in LEGACY_TRAINING_KEYS}
        return JobSpec.model_validate({"model": self.model, "dataset": self.dataset, **config,
                                       "dataset_rows": self.dataset_rows if with_rows else None})

    def basis(self) -> dict[str, Any] | None:
        """What the prediction assumed; older versions kept it in config."""
        return self.prediction_basis or self.config.get("prediction")


class JobPublic(JobBase, JobFigures):
    """A job as the API shows it."""

    id: int
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    error: str | None
    config: JobSpec = Field(description="What the job trains: model, dataset, LoRA and training fields.")
    experiment_id: int | None = Field(default=None, description="The sweep this job is one value of, if any.")
    owner_id: int | None = Field(default=None, description="The account that created the job; none when accounts are off.")
    shared: bool = Field(default=False, description="Everyone may see the job (the owner chose to share it).")
    retry_of: int | None = Field(default=None, description="The job this one retries with the same spec.")
    last_step: int | None = Field(default=None, description="The latest optimizer step with a metric row.")
    has_adapter: bool = Field(default=False, description="GET /api/jobs/{id}/adapter serves a zip.")


class MetricBase(SQLModel):
    """One optimizer step's measurements."""

    step: int = Field(description="Optimizer step, from 1.")
    train_loss: float | None = Field(default=None, description="Mean loss over the response tokens of the step.")
    learning_rate: float | None = None
    grad_norm: float | None = Field(default=None, description="Gradient norm before clipping.")
    tokens_per_second: float | None = Field(default=None, description="Target tokens per second over the step.")
    elapsed_seconds: float | None = Field(default=None, description="Since the first step began.")
    tokens_seen: int | None = Field(default=None, sa_type=BigInteger, description="Real (non-padding) tokens trained on up to this step.")
    epoch: float | None = Field(default=None, description="Passes over the training rows up to this step.")
    eval_loss: float | None = Field(default=None, description="Held-out loss, on eval steps only.")
    exact_match: float | None = Field(default=None, description="Held-out exact match (0-1), synthetic task only.")


class MetricPoint(MetricBase, table=True):
    """A metric row, appended by the worker once per optimizer step."""

    __tablename__ = "metric_point"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    recorded_at: datetime = Field(default_factory=utcnow)


class MetricPublic(MetricBase):
    """A metric row as the API and the SSE stream show it."""

    recorded_at: datetime


class AdapterArchive(SQLModel, table=True):
    """The trained adapter as a zip, in the database so any web host can serve what any worker host trained."""

    __tablename__ = "adapter_archive"

    job_id: int = Field(foreign_key="job.id", primary_key=True)
    size_bytes: int = Field(sa_type=BigInteger)
    content: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utcnow)


class ModuleTree(SQLModel, table=True):
    """A model's module tree built by the tree helper, or the reason it could not be built; shared by web hosts."""

    __tablename__ = "module_tree"

    key: str = Field(primary_key=True, description="sha256 of the normalised config.json, the task and library versions.")
    model_type: str = Field(description="config.json's model_type.")
    task: str | None = Field(default=None, description="The task asked for; None: inferred from the config.")
    tree: dict[str, Any] | None = Field(default=None, sa_type=JSON, description="app.calc.tree's data, when built.")
    error: dict[str, Any] | None = Field(default=None, sa_type=JSON, description="loc, message and type, when not.")
    created_at: datetime = Field(default_factory=utcnow)
