"""Server-Sent Events for jobs: one event per metric row (id = step), status changes, and the end.

The stream polls the database, the only channel between web and worker processes. Metric events
carry `id: <step>`, so a reconnecting EventSource sends Last-Event-ID and resumes with the next
step: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi.sse import ServerSentEvent
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.jobs import service
from app.jobs.tables import FINISHED_STATUSES, JobPublic, MetricPublic

METRIC_BATCH = 500
RETRY_MILLISECONDS = 1000

# Page streams add HTML fragments for htmx to swap: event name -> HTML, from the job and its last metric.
FragmentRenderer = Callable[[JobPublic, MetricPublic | None], dict[str, str]]


def parse_resume_step(last_event_id: str | None, after: int | None) -> int:
    """The last step the client has: Last-Event-ID (set by a reconnecting browser) wins over ?after=.

    A Last-Event-ID that is not a step this server could have sent (not a whole number from 0 to
    2**63-1) is ignored, as the SSE spec lets a server do, so the stream starts from ?after= instead.
    """
    text = (last_event_id or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= len(str(service.MAX_ID)) and int(text) <= service.MAX_ID:
        return int(text)
    return after or 0


def _snapshot(engine: Engine, job_id: int, after: int) -> tuple[JobPublic, list[MetricPublic]]:
    # The job is read before its metrics: a worker writes every metric before the final status,
    # so when this read sees a finished job the metric read that follows sees all of its rows.
    with Session(engine) as session:
        job = service.get_job(session, job_id)
        public = service.job_public(session, job)
        return public, service.metrics_after(session, job_id, after, limit=METRIC_BATCH)


def _metric_at(engine: Engine, job_id: int, step: int) -> MetricPublic | None:
    with Session(engine) as session:
        return service.metric_at(session, job_id, step)


async def job_event_stream(
    engine: Engine, job_id: int, after: int, poll_seconds: float, fragments: FragmentRenderer | None = None
) -> AsyncIterator[ServerSentEvent]:
    """Metric events after step `after`, then status and fragment events as they change, until the job ends."""
    yield ServerSentEvent(retry=RETRY_MILLISECONDS, comment="job stream")
    last_seen: tuple | None = None
    # a resuming page still needs the step it has, to draw its progress bar, ETA and speed
    last_metric = await run_in_threadpool(_metric_at, engine, job_id, after) if fragments and after else None
    while True:
        job, metrics = await run_in_threadpool(_snapshot, engine, job_id, after)
        for metric in metrics:
            yield ServerSentEvent(event="metric", id=str(metric.step), data=metric)
        if metrics:
            after, last_metric = metrics[-1].step, metrics[-1]
        seen = (job.status, job.total_steps, job.device, job.cancel_requested, after)
        if seen != last_seen:
            last_seen = seen
            yield ServerSentEvent(event="status", data=_status_payload(job))
            for name, html in (fragments(job, last_metric) if fragments else {}).items():
                yield ServerSentEvent(event=name, raw_data=html)
        caught_up = len(metrics) < METRIC_BATCH
        if job.status in FINISHED_STATUSES and caught_up:
            yield ServerSentEvent(event="done", data=_status_payload(job))
            return
        if caught_up:
            await asyncio.sleep(poll_seconds)


def _status_payload(job: JobPublic) -> dict:
    return {
        "id": job.id,
        "status": job.status.value,
        "last_step": job.last_step,
        "total_steps": job.total_steps,
        "device": job.device,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
    }
