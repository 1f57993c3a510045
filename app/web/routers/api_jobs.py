"""JSON API for jobs: datasets, submit, list, read, metrics, SSE events, cancel, adapter download."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from sqlmodel import Session

from app.content import datasets
from app.jobs import admission, service
from app.jobs.tables import Job, JobPublic, MetricPublic
from app.spec import FieldError, JobCreate
from app.web.auth import JobCreator, ViewerDep
from app.web.openapi import ERROR_BODY, RETRY_AFTER
from app.web.deps import CatalogueDep, EngineDep, SessionDep, SettingsDep
from app.web.sse import EVENT_STREAM_RESPONSES, EventStream, job_event_stream, parse_resume_step

router = APIRouter(prefix="/api", tags=["jobs"])
PREVIEW_ROWS = 3


def existing_job(job_id: int, session: SessionDep, viewer: ViewerDep) -> Job:
    """The job with this id, or 404 (also for ids no job can have, and for a job its owner has not shared)."""
    job = service.get_job(session, job_id)
    if job is None or not viewer.can_view(job):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


def existing_job_id(job_id: int, engine: EngineDep, viewer: ViewerDep) -> int:
    """404 unless the job exists and may be seen; opens its own short session so a long stream holds no connection."""
    with Session(engine) as session:
        existing_job(job_id, session, viewer)
    return job_id


JobDep = Annotated[Job, Depends(existing_job)]


def controlled_job(job: JobDep, viewer: ViewerDep) -> Job:
    """The job, if the requester may act on it (its owner or an admin); 403 for one they may only see."""
    if not viewer.can_control(job):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"job {job.id} belongs to another account: only its owner or an admin may do this")
    return job


ControlledJobDep = Annotated[Job, Depends(controlled_job)]


def job_controls(job_id: int, engine: EngineDep, viewer: ViewerDep) -> bool:
    """Whether the requester may act on a job they may see (for streams, which hold no session)."""
    with Session(engine) as session:
        return viewer.can_control(existing_job(job_id, session, viewer))
# A job-creating operation's answers when there is no room now: the same request may pass later
NO_ROOM = {
    503: {"description": "The queue is full for everyone (max_queued_jobs); `detail` gives the figures",
          "content": ERROR_BODY, "headers": RETRY_AFTER},
    429: {"description": "The user's quota is used up (max_queued_jobs_per_user or max_gpu_seconds_per_day); `detail` gives the figures",
          "content": ERROR_BODY, "headers": RETRY_AFTER},
}


def refused(rejected: FieldError) -> HTTPException:
    """A refused job: 422 naming the field, or for no room now 503 (queue) or 429 (quota) with Retry-After."""
    if isinstance(rejected, admission.NoRoom):
        return HTTPException(rejected.status_code, [rejected.as_error(("body",))], headers={"Retry-After": str(rejected.retry_after)})
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [rejected.as_error(("body",))])


NOT_YOURS = {403: {"description": "The job belongs to another account"}, 404: {"description": "No such job, or not shared with you"}}


class DatasetPublic(BaseModel):
    """A catalogue dataset: what it teaches, its split sizes and its first rows."""

    id: str
    title: str
    description: str
    task: str = Field(description="qa, style or exact_match (scored by exact match on the eval split).")
    train_rows: int
    eval_rows: int
    preview: list[dict[str, str]] = Field(description="The first training rows as prompt and response.")


@router.get("/datasets", summary="Datasets a job can train on, with their split sizes and a preview")
def list_datasets(settings: SettingsDep) -> list[DatasetPublic]:
    return [
        DatasetPublic(**asdict(info), preview=datasets.preview(datasets.load_dataset(info.id, settings.content_dir).train, PREVIEW_ROWS))
        for info in datasets.list_datasets(settings.content_dir)
    ]


@router.post("/jobs", status_code=status.HTTP_201_CREATED, summary="Queue a fine-tuning job",
             responses={422: {"description": "A field breaks a rule or an instance limit; `detail` names it and says why"},
                        **NO_ROOM,
                        401: {"description": "Accounts are on and no valid session or bearer token came with the request"},
                        403: {"description": "A non-loopback instance without accounts that is not marked open"}})
def create_job(request: JobCreate, session: SessionDep, settings: SettingsDep, catalogue: CatalogueDep,
               response: Response, creator: JobCreator) -> JobPublic:
    try:
        job = service.create_job(session, settings, catalogue, request, owner_id=creator.id if creator else None)
    except FieldError as rejected:
        raise refused(rejected) from rejected
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return service.job_public(session, job)


@router.get("/jobs", summary="Jobs, newest first")
def list_jobs(session: SessionDep, viewer: ViewerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[JobPublic]:
    return service.list_jobs(session, limit, viewer.visible())


@router.get("/jobs/{job_id}", summary="A job: status, config, measured and predicted figures")
def read_job(job: JobDep, session: SessionDep) -> JobPublic:
    return service.job_public(session, job)


@router.get("/jobs/{job_id}/metrics", summary="Metric rows after a step, in step order")
def read_metrics(job: JobDep, session: SessionDep, after: Annotated[int, Query(ge=0, le=service.MAX_ID)] = 0) -> list[MetricPublic]:
    return service.metrics_after(session, job.id, after)


@router.get("/jobs/{job_id}/events", response_class=EventStream, responses=EVENT_STREAM_RESPONSES,
            summary="Server-Sent Events: `metric` (id = step), `status`, and `done` when the job has ended")
async def job_events(
    job_id: Annotated[int, Depends(existing_job_id)],
    engine: EngineDep,
    settings: SettingsDep,
    after: Annotated[int | None, Query(ge=0, le=service.MAX_ID, description="Resume after this step (Last-Event-ID wins).")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream:
    return EventStream(job_event_stream(engine, job_id, parse_resume_step(last_event_id, after), settings.poll_seconds))


@router.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED,
             summary="Cancel: a queued job at once, a running one within one optimizer step",
             responses={409: {"description": "The job has already finished"}, **NOT_YOURS})
def cancel_job(job: ControlledJobDep, session: SessionDep) -> JobPublic:
    try:
        job = service.request_cancel(session, job)
    except service.JobConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, str(conflict)) from conflict
    return service.job_public(session, job)


@router.get("/jobs/{job_id}/adapter", summary="The trained adapter in PEFT format, as a zip",
            response_class=Response, responses={200: {"content": {"application/zip": {}}}, 404: {"description": "No adapter (yet)"},
                                                403: NOT_YOURS[403]})
def download_adapter(job: ControlledJobDep, session: SessionDep) -> Response:
    content = service.adapter_archive(session, job.id)
    if content is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} has no adapter: it is {job.status.value}")
    filename = f"lorapedia-job-{job.id}-adapter.zip"
    return Response(content, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{filename}"'})
