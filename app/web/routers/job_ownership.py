"""What only a job's owner (or an admin) does besides cancelling: retry it, share it. API and page forms."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from app.jobs import service
from app.jobs.tables import JobPublic
from app.spec import FieldError
from app.web.auth import JobCreator
from app.web.deps import CatalogueDep, SessionDep, SettingsDep
from app.web.errors import error_response
from app.web.routers.api_jobs import NO_ROOM, NOT_YOURS, ControlledJobDep, refused

api = APIRouter(prefix="/api", tags=["jobs"])
pages = APIRouter(include_in_schema=False)


class ShareRequest(BaseModel):
    """What POST /api/jobs/{id}/share accepts."""

    shared: bool = Field(description="true: everyone may see the job's page, metrics and results (never its adapter).")


@api.post("/jobs/{job_id}/retry", status_code=status.HTTP_201_CREATED,
          summary="Queue a new job with the same spec as an interrupted, failed or cancelled one",
          responses={409: {"description": "The job is queued, running or succeeded"},
                     422: {"description": "The spec no longer passes this instance's limits"}, **NO_ROOM, **NOT_YOURS})
def retry_job(job: ControlledJobDep, session: SessionDep, settings: SettingsDep, catalogue: CatalogueDep, _creator: JobCreator) -> JobPublic:
    try:
        new_job = service.retry_job(session, settings, catalogue, job)
    except service.JobConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, str(conflict)) from conflict
    except FieldError as rejected:
        raise refused(rejected) from rejected
    return service.job_public(session, new_job)


@api.post("/jobs/{job_id}/share", summary="Share the job with everyone, or stop sharing it", responses=NOT_YOURS)
def share_job(body: ShareRequest, job: ControlledJobDep, session: SessionDep) -> JobPublic:
    return service.job_public(session, service.set_shared(session, job, body.shared))


@pages.post("/jobs/{job_id}/retry")
def retry_job_page(request: Request, job: ControlledJobDep, session: SessionDep, settings: SettingsDep, catalogue: CatalogueDep,
                   _creator: JobCreator):
    """Retry from the job page: on to the new job's page, or a page saying why not."""
    try:
        new_job = service.retry_job(session, settings, catalogue, job)
    except service.JobConflict:
        return RedirectResponse(f"/jobs/{job.id}", status_code=status.HTTP_303_SEE_OTHER)
    except FieldError as rejected:
        return error_response(request, [rejected.as_error(("body",))])
    return RedirectResponse(f"/jobs/{new_job.id}", status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/jobs/{job_id}/share")
async def share_job_page(request: Request, job: ControlledJobDep, session: SessionDep):
    """The share switch on the job page."""
    form = await request.form(max_fields=10)
    service.set_shared(session, job, form.get("shared") == "true")
    return RedirectResponse(f"/jobs/{job.id}", status_code=status.HTTP_303_SEE_OTHER)
