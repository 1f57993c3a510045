"""Settings: the only reader of the environment (LORAPEDIA_* variables, and DATABASE_URL)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.spec.limits import WORK_SECONDS
from app.spec.training import InstanceLimits

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of the app, with its default and what it does."""

    model_config = SettingsConfigDict(env_prefix="LORAPEDIA_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface the web server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the web server listens on.")
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/]+(/.*)?$",
        description="The site's public address (https://lorapedia.example.org) for canonical and link-preview URLs; unset means the request's own.",
    )
    log_level: str = Field("info", description="Python logging level for the app.")
    content_dir: Path = Field(PROJECT_ROOT / "content", description="Markdown content, model catalogue, datasets and recorded runs.")
    var_dir: Path = Field(PROJECT_ROOT / "var", description="Runtime state: SQLite database, model cache, adapters.")
    model_cache_dir: Path = Field(PROJECT_ROOT / "var" / "models", description="Converted model weights (safetensors), prepared once.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LORAPEDIA_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; unset means SQLite with WAL at var/lorapedia.db. postgresql+psycopg://... for several hosts.",
    )
    db_pool_size: int = Field(
        40, ge=1, le=1000,
        description="Database connections each process keeps: one per worker thread of the web server (anyio runs 40).",
    )
    db_max_overflow: int = Field(60, ge=0, le=1000, description="Connections opened beyond db_pool_size under bursts, closed after.")
    embedded_worker: bool = Field(True, description="`lorapedia serve` starts one worker process beside the web server.")
    embedded_worker_nice: int = Field(
        10, ge=0, le=19,
        description="Niceness of the embedded worker (0 to 19): on a host it shares with the web server, training on the CPU "
        "yields to page requests instead of taking turns with them. A worker started on its own (`lorapedia worker`) keeps 0.",
    )
    allowed_models: list[str] = Field(
        default_factory=list,
        description="Extra Hugging Face ids or local paths that jobs may load (JSON list). trust_remote_code is never enabled.",
    )
    max_queued_jobs: int = Field(20, ge=1, description="Jobs waiting in the queue at most; more are refused with 503 and Retry-After.")
    max_steps: int = Field(500, ge=1, description="Optimizer steps one job may run at most.")
    max_seq_length: int = Field(1024, ge=8, description="Longest sequence a job may train on, in tokens.")
    max_batch_size: int = Field(256, ge=1, description="per_device_train_batch_size of a job at most.")
    max_accumulation_steps: int = Field(256, ge=1, description="gradient_accumulation_steps of a job at most.")
    max_dataset_bytes: int = Field(2_000_000, ge=1, description="Size limit of a pasted JSONL dataset, in bytes.")
    max_dataset_rows: int = Field(5_000, ge=1, description="Rows a pasted JSONL dataset may hold at most.")
    max_body_bytes: int = Field(8_000_000, ge=1024, description="Largest request body accepted, in bytes; at least 3x max_dataset_bytes, since a form sends a paste percent-encoded (up to 3 bytes per character) and an oversized paste should get the dataset's own error.")
    work_seconds: float = Field(
        WORK_SECONDS, gt=0, le=600,
        description="Time one request may compute (calculator, explain, dataset checks); beyond it the work stops with 503 and Retry-After.",
    )
    lease_seconds: float = Field(30.0, gt=0, description="A running job whose worker has not heartbeated for this long is marked interrupted.")
    heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker renews the lease of its running job.")
    poll_seconds: float = Field(0.1, gt=0, description="How often an idle worker and the SSE stream poll the database.")
    cpu_precision: Literal["auto", "bf16-weights", "bf16-autocast", "fp32"] = Field(
        "auto",
        description="How a CPU job computes. auto: bf16-weights where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), "
        "fp32 elsewhere. bf16-weights: frozen base weights in bf16, LoRA adapters, gradients and optimizer in fp32 "
        "(1.47x the tokens/s of fp32 on SmolLM2 in bench/bench_bf16_cpu.py on a quiet machine, 1.42-1.54x under load; "
        "autocast 1.42x quiet, 1.06-2.26x under load: README, Benchmarks). "
        "bf16-autocast: fp32 weights, forward passes under torch.autocast. fp32: fp32 throughout.",
    )
    accounts: bool = Field(False, description="on: creating jobs needs a signed-in user (sign-in form, API bearer tokens); reading stays public.")
    open_instance: bool = Field(False, description="Lets anyone create jobs on a non-loopback bind without accounts; off, such an instance refuses job creation.")
    login_failures: int = Field(10, ge=1, description="Failed sign-ins one client address, or one account name, may make per login_window_seconds; more answer 429 with Retry-After.")
    login_window_seconds: float = Field(600.0, gt=0, description="The window in which login_failures are counted, in seconds.")
    session_days: float = Field(14.0, gt=0, description="How long a browser sign-in lasts, in days.")
    max_queued_jobs_per_user: int = Field(3, ge=1, description="Queued jobs one user may have waiting at once (accounts on).")
    max_gpu_seconds_per_day: float = Field(
        4 * 3600.0, gt=0,
        description="Worker time one user's jobs may take in any 24 hours, in seconds (GPU-seconds on a GPU worker; wall time on whatever device the worker has).")
    job_time_limit_seconds: float = Field(3600.0, gt=0, description="Wall time one job may run; the worker stops it past this, and a job predicted to take longer is refused.")
    worker_memory_bytes: int | None = Field(
        None, ge=1,
        description="Memory of the workers' training device, in bytes; a job predicted to need more is refused. Unset: this host's RAM.")
    worker_flops_per_second: float = Field(
        5e10, gt=0,
        description="Sustained training throughput assumed for time predictions, in FLOP/s (5e10: SmolLM2-135M measured on this project's 2-core CPU).")
    min_free_disk_bytes: int = Field(50_000_000, ge=0, description="Free space a worker keeps beyond an adapter's size; a save that would leave less fails first.")
    web_threads: int = Field(40, ge=1, description="Threads the web process runs blocking work on; the database pool is sized to match.")
    omp_wait_policy: str = Field(
        "PASSIVE",
        validation_alias=AliasChoices("LORAPEDIA_OMP_WAIT_POLICY", "OMP_WAIT_POLICY"),
        description="OpenMP's OMP_WAIT_POLICY for the worker's torch. PASSIVE: with OpenMP's default spin-waiting, "
        "threads sharing a busy CPU wait on each other at every parallel region (SmolLM2's first answer took 64 s "
        "instead of 4 s on a busy 2-core machine); sleeping waiters cost little on an idle one.",
    )

    @model_validator(mode="after")
    def _body_holds_an_encoded_dataset(self) -> Settings:
        if self.max_body_bytes < 3 * self.max_dataset_bytes:
            raise ValueError(f"max_body_bytes ({self.max_body_bytes}) must be at least 3 x max_dataset_bytes "
                             f"({3 * self.max_dataset_bytes}): a form percent-encodes a pasted dataset")
        return self

    def instance_limits(self) -> InstanceLimits:
        """What this instance allows one job, checked by app.spec in one place."""
        return InstanceLimits(max_steps=self.max_steps, max_seq_length=self.max_seq_length,
                              max_batch_size=self.max_batch_size, max_accumulation_steps=self.max_accumulation_steps)

    @property
    def is_loopback(self) -> bool:
        """True when the web server binds a loopback address only (nobody else can reach it)."""
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def secure_cookies(self) -> bool:
        """Cookies get Secure when the public address is https (TLS ends at a reverse proxy in front)."""
        return (self.public_url or "").startswith("https://")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to SQLite under var_dir."""
        return self.database_url or f"sqlite:///{self.var_dir / 'lorapedia.db'}"

    def apply_worker_environment(self) -> None:
        """Export what the worker's native libraries read from the environment; call before torch is imported."""
        os.environ["OMP_WAIT_POLICY"] = self.omp_wait_policy

    @property
    def adapters_dir(self) -> Path:
        """Where trained adapters are saved."""
        return self.var_dir / "adapters"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
