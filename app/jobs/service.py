"""Job service functions for the web process: create (with limits), read, list, cancel."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import ColumnElement, func, text, update
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from app.calc import Catalogue
from app.content import datasets
from app.jobs import admission, predictions, queue
from app.jobs.tables import FINISHED_STATUSES, AdapterArchive, Job, JobPublic, JobStatus, MetricPoint, MetricPublic, utcnow
from app.settings import Settings
from app.spec import FieldError, JobCreate, JobSpec
from app.spec.job import PASTED_DATASET

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # the largest id a BIGINT key holds; larger ids are refused before they reach the database
QUEUE_LOCK_KEY = 0x4C6F7261  # PostgreSQL advisory lock taken while counting queued jobs and inserting one
# Job columns a reader of status and figures never needs: pasted rows are up to max_dataset_bytes of JSON.
HEAVY_COLUMNS = (Job.dataset_rows,)


class JobConflict(ValueError):
    """An action that the job's current status does not allow."""


def create_job(session: Session, settings: Settings, catalogue: Catalogue, request: JobCreate,
               owner_id: int | None = None) -> Job:
    """Check the request against the models, datasets, the instance's limits and the calculator, then queue it.

    Raises FieldError naming the field at fault.
    """
    rows = _pasted_rows(settings, request)
    spec = JobSpec(model=request.model, dataset=PASTED_DATASET if rows is not None else request.dataset,
                   lora=request.lora, training=request.training, dataset_rows=rows)
    return admit(session, settings, catalogue, spec, owner_id)


def admit(session: Session, settings: Settings, catalogue: Catalogue, spec: JobSpec, owner_id: int | None = None,
          retry_of: int | None = None) -> Job:
    """Queue a JobSpec (pasted rows in spec.dataset_rows) if the instance, the worker and the owner's quota allow it."""
    catalogue.resolve_trainable(spec.model, settings.allowed_models)
    rows = spec.dataset_rows
    train_rows = rows if rows is not None else _catalogue_rows(settings, spec.dataset)
    total_steps = settings.instance_limits().check(spec.training, len(train_rows))
    prediction = predictions.predict(spec, catalogue, total_steps, admission.row_tokens(train_rows, spec.training.max_seq_length),
                                     settings.worker_flops_per_second)
    admission.check_predictions(settings, prediction["predicted_memory_bytes"], prediction["predicted_seconds"])
    # unset LoRA fields are left out rather than null, so peft and the trainer apply their own defaults
    job = Job(model=spec.model, dataset=spec.dataset, config=spec.model_dump(mode="json", exclude_none=True,
              exclude={"model", "dataset"}), dataset_rows=rows, owner_id=owner_id, retry_of=retry_of, **prediction)
    # Count and insert in one transaction that holds the queue's lock, so concurrent requests cannot over-admit.
    session.commit()  # end any transaction the request's session has open, so the lock is taken first
    _lock_queue(session)
    try:
        if queue.count_queued(session) >= settings.max_queued_jobs:
            raise FieldError([], f"the queue is full: {settings.max_queued_jobs} jobs are already waiting (max_queued_jobs); try again when one has started")
        if owner_id is not None:
            admission.check_quota(session, settings, owner_id, prediction["predicted_seconds"])
        session.add(job)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    session.refresh(job)
    logger.info("queued job %d (%s on %s) for owner %s", job.id, job.model, job.dataset, owner_id)
    return job


def retry_job(session: Session, settings: Settings, catalogue: Catalogue, job: Job) -> Job:
    """A new queued job with the same spec (pasted rows included) as a job that did not succeed; the same owner."""
    if job.status not in (JobStatus.interrupted, JobStatus.failed, JobStatus.cancelled):
        raise JobConflict(f"job {job.id} is {job.status.value}; only an interrupted, failed or cancelled job can be retried")
    rows = session.exec(select(Job.dataset_rows).where(Job.id == job.id)).one()
    spec = job.spec().model_copy(update={"dataset_rows": rows})
    return admit(session, settings, catalogue, spec, job.owner_id, retry_of=job.id)


def set_shared(session: Session, job: Job, shared: bool) -> Job:
    """Share the job with everyone (its page, metrics and results; never its adapter), or stop sharing it."""
    session.execute(update(Job).where(Job.id == job.id).values(shared=shared))
    session.commit()
    session.refresh(job)
    return job


def _lock_queue(session: Session) -> None:
    """Serialise admissions: SQLite takes its write lock now (BEGIN IMMEDIATE), PostgreSQL a transaction advisory lock.

    Only admission adds queued jobs (claims and cancels only take them away), so counting under a lock
    that every admission takes, then inserting before releasing it, never lets the queue grow past the limit.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK_KEY})


def _pasted_rows(settings: Settings, request: JobCreate) -> list[dict[str, Any]] | None:
    if request.dataset_jsonl is None:
        return None
    try:
        return datasets.parse_jsonl(request.dataset_jsonl, settings.max_dataset_bytes, settings.max_dataset_rows)
    except datasets.DatasetError as error:
        raise FieldError(["dataset_jsonl"], str(error)) from error


def _catalogue_rows(settings: Settings, dataset_id: str | None) -> list[dict[str, Any]]:
    try:
        return datasets.load_dataset(dataset_id, settings.content_dir).train
    except datasets.UnknownDatasetError as error:
        raise FieldError(["dataset"], str(error.args[0])) from error


def get_job(session: Session, job_id: int) -> Job | None:
    """The job, after reaping it if its lease ran out (so no reader ever sees a dead job 'running')."""
    if not 1 <= job_id <= MAX_ID:
        return None
    job = session.get(Job, job_id, options=[defer(*HEAVY_COLUMNS)])
    if job is not None and _lease_expired(job):
        queue.reap_expired_leases(session.get_bind())
        session.refresh(job)
    return job


def list_jobs(session: Session, limit: int = 200, visible: ColumnElement[bool] | None = None) -> list[JobPublic]:
    """The newest jobs first (those `visible` selects), each with its last step."""
    query = select(Job).options(defer(*HEAVY_COLUMNS)).order_by(col(Job.id).desc()).limit(limit)
    jobs = session.exec(query.where(visible) if visible is not None else query).all()
    if any(_lease_expired(job) for job in jobs):
        queue.reap_expired_leases(session.get_bind())
        for job in jobs:
            session.refresh(job)
    last_steps = dict(
        session.exec(
            select(MetricPoint.job_id, func.max(MetricPoint.step))
            .where(col(MetricPoint.job_id).in_([job.id for job in jobs]))
            .group_by(MetricPoint.job_id)
        ).all()
    )
    archived = set(session.exec(select(AdapterArchive.job_id).where(col(AdapterArchive.job_id).in_([job.id for job in jobs]))).all())
    return [to_public(job, last_steps.get(job.id), job.id in archived) for job in jobs]


def job_public(session: Session, job: Job) -> JobPublic:
    """One job as the API shows it."""
    last_step = session.exec(select(func.max(MetricPoint.step)).where(MetricPoint.job_id == job.id)).one()
    has_adapter = session.exec(select(AdapterArchive.job_id).where(AdapterArchive.job_id == job.id)).first() is not None
    return to_public(job, last_step, has_adapter)


def to_public(job: Job, last_step: int | None, has_adapter: bool) -> JobPublic:
    """A table row as its public model."""
    return JobPublic.model_validate(job, update={"config": job.spec(), "prediction_basis": job.basis(),
                                                 "last_step": last_step, "has_adapter": has_adapter})


def metrics_after(session: Session, job_id: int, after: int = 0, limit: int | None = None) -> list[MetricPublic]:
    """Metric rows with step > after, in step order."""
    query = select(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > after).order_by(MetricPoint.step)
    if limit is not None:
        query = query.limit(limit)
    return [MetricPublic.model_validate(point) for point in session.exec(query).all()]


def metric_at(session: Session, job_id: int, step: int) -> MetricPublic | None:
    """The metric row of one step, or None."""
    point = session.exec(select(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step == step)).first()
    return MetricPublic.model_validate(point) if point is not None else None


def request_cancel(session: Session, job: Job) -> Job:
    """Cancel a queued job at once; ask the worker to stop a running one within one optimizer step."""
    if job.status == JobStatus.queued:
        session.execute(
            update(Job).where(Job.id == job.id, Job.status == JobStatus.queued)
            .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=utcnow())
        )
    session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.running).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    if job.status in FINISHED_STATUSES and job.status != JobStatus.cancelled and not job.cancel_requested:
        raise JobConflict(f"job {job.id} has already finished ({job.status.value}); there is nothing to cancel")
    logger.info("cancel requested for job %d (%s)", job.id, job.status.value)
    return job


def adapter_archive(session: Session, job_id: int) -> bytes | None:
    """The adapter zip of a succeeded job, or None."""
    archive = session.get(AdapterArchive, job_id)
    return archive.content if archive is not None else None


def _lease_expired(job: Job) -> bool:
    return job.status == JobStatus.running and job.lease_expires_at is not None and job.lease_expires_at < utcnow()
