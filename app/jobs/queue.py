"""The job queue in the database: claim, heartbeat (lease), reap, append metrics, finish.

Every function takes an engine and opens its own short transaction, so a worker's threads and
several workers on several hosts can share one database.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.jobs.tables import AdapterArchive, Job, JobStatus, MetricBase, MetricPoint, utcnow

logger = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 5
LEASE_EXPIRED_ERROR = "interrupted: its worker stopped renewing the lease (killed, crashed or cut off)"


def claim_next_job(engine: Engine, worker_id: str, lease_seconds: float) -> int | None:
    """Mark the oldest queued job running for `worker_id` and return its id, or None when none is queued.

    PostgreSQL locks the candidate row with FOR UPDATE SKIP LOCKED, so concurrent workers pick
    different rows; SQLite ignores that clause and the conditional UPDATE (status still queued)
    makes the claim atomic instead: of two racing workers exactly one updates the row.
    """
    candidates = select(Job.id).where(Job.status == JobStatus.queued).order_by(Job.id).limit(1)
    with Session(engine) as session:
        for _ in range(CLAIM_ATTEMPTS):
            job_id = session.exec(candidates.with_for_update(skip_locked=True)).first()
            if job_id is None:
                session.rollback()
                return None
            now = utcnow()
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued)
                .values(
                    status=JobStatus.running,
                    worker_id=worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                )
            ).rowcount
            session.commit()
            if claimed == 1:
                logger.info("worker %s claimed job %d", worker_id, job_id)
                return job_id
    return None


def renew_lease(engine: Engine, job_id: int, worker_id: str, lease_seconds: float) -> bool:
    """Extend the lease of a job this worker runs; False when the job is no longer this worker's to run."""
    now = utcnow()
    with Session(engine) as session:
        renewed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        ).rowcount
        session.commit()
    return renewed == 1


def reap_expired_leases(engine: Engine) -> list[int]:
    """Mark interrupted every running job whose lease has run out; return their ids."""
    now = utcnow()
    with Session(engine) as session:
        expired = session.exec(
            select(Job.id).where(Job.status == JobStatus.running, Job.lease_expires_at < now)
        ).all()
        if not expired:
            return []
        session.execute(
            update(Job)
            # the status and lease are checked again: a worker may have renewed or finished meanwhile
            .where(Job.id.in_(expired), Job.status == JobStatus.running, Job.lease_expires_at < now)
            .values(status=JobStatus.interrupted, finished_at=now, error=LEASE_EXPIRED_ERROR)
        )
        session.commit()
    logger.warning("marked jobs %s interrupted: their leases ran out", expired)
    return list(expired)


def interrupt_worker_jobs(engine: Engine, worker_prefix: str, reason: str) -> list[int]:
    """Mark interrupted the running jobs of a worker that has died (worker ids starting with `worker_prefix`)."""
    now = utcnow()
    with Session(engine) as session:
        running = session.exec(select(Job.id).where(
            Job.status == JobStatus.running, col(Job.worker_id).startswith(worker_prefix, autoescape=True))).all()
        if running:
            session.execute(update(Job).where(Job.id.in_(running), Job.status == JobStatus.running)
                            .values(status=JobStatus.interrupted, finished_at=now, error=reason))
            session.commit()
    if running:
        logger.warning("marked jobs %s interrupted: %s", list(running), reason)
    return list(running)


def is_stop_requested(engine: Engine, job_id: int, worker_id: str) -> bool:
    """True when the user asked to cancel the job, or it is no longer this worker's running job."""
    with Session(engine) as session:
        row = session.exec(
            select(Job.cancel_requested, Job.status, Job.worker_id).where(Job.id == job_id)
        ).first()
    if row is None:
        return True
    cancel_requested, status, owner = row
    return cancel_requested or status != JobStatus.running or owner != worker_id


def record_start(engine: Engine, job_id: int, worker_id: str, figures: dict[str, Any]) -> None:
    """Store what the trainer reports once the model is loaded (device, total steps, samples before...)."""
    _update_running_job(engine, job_id, worker_id, figures)


def append_metric(engine: Engine, job_id: int, metric: dict[str, Any]) -> None:
    """Append one optimizer step's metric row; a repeated step is ignored (the first write wins)."""
    known = {name: metric.get(name) for name in MetricBase.model_fields}
    with Session(engine) as session:
        session.add(MetricPoint(job_id=job_id, **known))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            logger.warning("job %d: metric for step %s already stored", job_id, metric.get("step"))


def store_adapter_archive(engine: Engine, job_id: int, content: bytes) -> None:
    """Keep the adapter zip in the database, where every web host can serve it."""
    with Session(engine) as session:
        session.merge(AdapterArchive(job_id=job_id, size_bytes=len(content), content=content))
        session.commit()


def finish_job(engine: Engine, job_id: int, worker_id: str, status: JobStatus, figures: dict[str, Any]) -> bool:
    """Give a running job its final status and figures; False when it was reaped or taken meanwhile."""
    return _update_running_job(engine, job_id, worker_id, {**figures, "status": status, "finished_at": utcnow()})


def _update_running_job(engine: Engine, job_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    with Session(engine) as session:
        updated = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
            .values(**values)
        ).rowcount
        session.commit()
    if updated != 1:
        logger.warning("job %d is no longer running on worker %s; not updated", job_id, worker_id)
    return updated == 1


def count_queued(session: Session) -> int:
    """Jobs waiting to be claimed."""
    return session.exec(select(func.count()).select_from(Job).where(Job.status == JobStatus.queued)).one()
