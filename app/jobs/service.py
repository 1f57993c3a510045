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
from app.jobs.tables import (FINISHED_STATUSES, AdapterArchive, Experiment, Job, JobPublic, JobStatus, MetricPoint,
                             MetricPublic, utcnow)
from app.settings import Settings
from app.spec import FieldError, JobCreate, JobSpec
from app.spec.job import PASTED_DATASET
from app.spec.sweeps import ExperimentCreate, SweepError, field_groups

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
    job = prepare_job(settings, catalogue, job_spec(settings, request), owner_id)
    _admit(session, settings, [job], owner_id)
    logger.info("queued job %d (%s on %s) for owner %s", job.id, job.model, job.dataset, owner_id)
    return job


def job_spec(settings: Settings, request: JobCreate) -> JobSpec:
    """The JobSpec a request asks for, its pasted rows parsed and validated."""
    rows = _pasted_rows(settings, request)
    return JobSpec(model=request.model, dataset=PASTED_DATASET if rows is not None else request.dataset,
                   lora=request.lora, training=request.training, dataset_rows=rows)


def prepare_job(settings: Settings, catalogue: Catalogue, spec: JobSpec, owner_id: int | None = None,
                retry_of: int | None = None) -> Job:
    """The job row a spec makes, after every check that does not need the queue; FieldError names the field at fault."""
    model = catalogue.resolve_trainable(spec.model, settings.allowed_models)
    rows = spec.dataset_rows
    train_rows = rows if rows is not None else _catalogue_rows(settings, spec.dataset)
    total_steps = settings.instance_limits().check(spec.training, len(train_rows))
    counter = admission.token_counter(model, settings)
    if counter is not None:
        admission.check_row_lengths(train_rows, counter, spec.training.max_seq_length, pasted=rows is not None,
                                    catalogue_key=None if rows is not None else (model.id, spec.dataset, settings.content_dir))
    prediction = predictions.predict(spec, catalogue, total_steps, admission.row_tokens(train_rows, spec.training.max_seq_length),
                                     settings.worker_flops_per_second)
    admission.check_predictions(settings, prediction["predicted_memory_bytes"], prediction["predicted_seconds"])
    # unset LoRA fields are left out rather than null, so peft and the trainer apply their own defaults
    return Job(model=spec.model, dataset=spec.dataset, config=spec.model_dump(mode="json", exclude_none=True,
               exclude={"model", "dataset"}), dataset_rows=rows, owner_id=owner_id, retry_of=retry_of, **prediction)


def create_experiment(session: Session, settings: Settings, catalogue: Catalogue, request: ExperimentCreate,
                      from_text: bool = False, owner_id: int | None = None) -> Experiment:
    """Queue one job per value of the swept field, all or none; SweepError lists every bad value and base field."""
    variants = request.variants(from_text=from_text)
    jobs, errors = [], []
    for index, variant in enumerate(variants):
        try:
            jobs.append(prepare_job(settings, catalogue, job_spec(settings, variant), owner_id))
        except FieldError as error:
            swept = error.loc[-1:] == (request.field,)
            errors.append(FieldError(("values", index) if swept else ("base", *error.loc), error.message).as_error())
    if errors:
        raise SweepError(errors)
    base = variants[0].model_dump(mode="json", exclude_none=True, exclude={"dataset_jsonl"})
    base[field_groups()[request.field]].pop(request.field, None)
    values = [getattr(getattr(variant, field_groups()[request.field]), request.field) for variant in variants]
    experiment = Experiment(name=request.name or f"{request.field} sweep", field=request.field,
                            values=values, base=base)
    _admit(session, settings, jobs, owner_id, experiment)
    logger.info("queued experiment %d: %s over %s (jobs %s)", experiment.id, request.field, values, [job.id for job in jobs])
    return experiment


def retry_job(session: Session, settings: Settings, catalogue: Catalogue, job: Job) -> Job:
    """A new queued job with the same spec (pasted rows included) as a job that did not succeed; the same owner."""
    if job.status not in (JobStatus.interrupted, JobStatus.failed, JobStatus.cancelled):
        raise JobConflict(f"job {job.id} is {job.status.value}; only an interrupted, failed or cancelled job can be retried")
    rows = session.exec(select(Job.dataset_rows).where(Job.id == job.id)).one()
    retry = prepare_job(settings, catalogue, job.spec().model_copy(update={"dataset_rows": rows}), job.owner_id, retry_of=job.id)
    _admit(session, settings, [retry], job.owner_id)
    logger.info("queued job %d retrying job %d", retry.id, job.id)
    return retry


def set_shared(session: Session, job: Job, shared: bool) -> Job:
    """Share the job with everyone (its page, metrics and results; never its adapter), or stop sharing it."""
    session.execute(update(Job).where(Job.id == job.id).values(shared=shared))
    session.commit()
    session.refresh(job)
    return job


def _admit(session: Session, settings: Settings, jobs: list[Job], owner_id: int | None = None,
           experiment: Experiment | None = None) -> None:
    """Insert the jobs (and their experiment) if the queue and the owner's quota have room for all; FieldError if not."""
    # Count and insert in one transaction that holds the queue's lock, so concurrent requests cannot over-admit.
    session.commit()  # end any transaction the request's session has open, so the lock is taken first
    _lock_queue(session)
    try:
        queued = queue.count_queued(session)
        if queued + len(jobs) > settings.max_queued_jobs:
            raise admission.queue_full(queued, settings.max_queued_jobs, len(jobs))
        if owner_id is not None:
            admission.check_quota(session, settings, owner_id, sum(job.predicted_seconds or 0.0 for job in jobs), len(jobs))
        if experiment is not None:
            session.add(experiment)
            session.flush()
            for job in jobs:
                job.experiment_id = experiment.id
        session.add_all(jobs)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for job in jobs:
        session.refresh(job)
    if experiment is not None:
        session.refresh(experiment)


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


def get_experiment(session: Session, experiment_id: int) -> Experiment | None:
    """The experiment, or None."""
    return session.get(Experiment, experiment_id) if 1 <= experiment_id <= MAX_ID else None


def experiment_jobs(session: Session, experiment_id: int) -> list[JobPublic]:
    """An experiment's jobs, in the order of its values."""
    ids = session.exec(select(Job.id).where(Job.experiment_id == experiment_id).order_by(col(Job.id))).all()
    return jobs_by_id(session, list(ids))


def jobs_by_id(session: Session, ids: list[int]) -> list[JobPublic]:
    """The jobs with these ids, in this order; ids with no job are left out."""
    jobs = [job for job in (get_job(session, job_id) for job_id in ids) if job is not None]
    return [job_public(session, job) for job in jobs]
