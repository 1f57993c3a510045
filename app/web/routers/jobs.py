"""Job pages: the list, the form (works without JavaScript), and a job's live page with its event stream."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.calc.curves import Flag, flags
from app.content import datasets
from app.jobs import estimates, service
from app.jobs.tables import FINISHED_STATUSES, JobPublic, MetricPublic
from app.spec import FieldError
from app.spec.base import as_text
from app.spec.errors import by_field
from app.web import forms
from app.web.deps import CatalogueDep, EngineDep, LibraryDep, SessionDep, SettingsDep
from app.web.auth import JobCreator, ViewerDep
from app.web.routers.api_jobs import ControlledJobDep, JobDep, existing_job_id, job_controls
from app.web.sse import Curve, EventStream, job_event_stream, parse_resume_step
from app.web.guard import off_loop
from app.web.templating import is_htmx, render, templates

router = APIRouter(include_in_schema=False)

DETAIL_TEMPLATE = "jobs/detail.html"
LIVE_BLOCKS = ("progress", "curve_flags", "results")
CHART_FIELDS = {"step", "train_loss", "eval_loss", "learning_rate"}


@router.get("/jobs", response_class=HTMLResponse)
def job_list(request: Request, session: SessionDep, viewer: ViewerDep):
    """Every job the requester may see: status, model, key parameters, final loss."""
    return render(request, "jobs/list.html", {"jobs": service.list_jobs(session, visible=viewer.visible())}, block="jobs")


def focused_field(slug: str | None) -> str | None:
    """The job form input a parameter page's "try it" link (/jobs/new?focus=<slug>) should focus, if the form has it."""
    if slug and (slug in forms.JOB_INPUTS or any(field.name == slug for field in forms.JOB_FIELDS)):
        return slug
    return None


def _form_context(settings, library, catalogue, values: dict[str, str], errors: dict[str, str],
                  focus: str | None = None, session=None) -> dict[str, Any]:
    outcome = forms.job_form(values) if session is not None else None
    return {
        "estimate": estimates.estimate(session, settings, outcome.request) if outcome and outcome.request else None,
        "sweep_query": urlencode({key: value for key, value in values.items()
                                  if key != "dataset_jsonl" and value != forms.JOB_DEFAULT_TEXT.get(key)}),
        "focus": focus,
        "fields": forms.JOB_FIELDS,
        "values": values,
        "errors": errors,
        "models": catalogue.trainable(settings.allowed_models),
        "datasets": datasets.list_datasets(settings.content_dir),
        "param_slugs": set(library.params),
    }


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(request: Request, session: SessionDep, settings: SettingsDep, library: LibraryDep, catalogue: CatalogueDep):
    """The job form, prefilled from the URL query (parameter pages and the calculator link here); ?focus=<field> marks one."""
    values = forms.prefill(forms.JOB_FIELDS, request.query_params, forms.JOB_INPUTS)
    values.setdefault("model", "tiny-llama")
    values.setdefault("dataset", datasets.list_datasets(settings.content_dir)[0].id)
    focus = focused_field(request.query_params.get("focus"))
    return render(request, "jobs/new.html", _form_context(settings, library, catalogue, values, {}, focus, session))


def data_preview(settings, submitted: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The rows a job would train on (pasted JSONL, else the chosen dataset), or the error that stops it."""
    pasted = (submitted.get("dataset_jsonl") or "").strip()
    try:
        if pasted:
            rows = datasets.parse_jsonl(pasted, settings.max_dataset_bytes, settings.max_dataset_rows)
            return {"source": "your pasted JSONL", "rows": len(rows), "shown": datasets.preview(rows)}, {}
        dataset = datasets.load_dataset(submitted.get("dataset", ""), settings.content_dir)
    except datasets.DatasetError as error:
        return None, {"dataset_jsonl": str(error)}
    except datasets.UnknownDatasetError as error:
        return None, {"dataset": error.args[0]}
    source = f"{dataset.info.title} ({dataset.info.eval_rows} more rows held out for evaluation)"
    return {"source": source, "rows": len(dataset.train), "shown": datasets.preview(dataset.train)}, {}


@router.post("/jobs/new", response_class=HTMLResponse)
async def submit_job(request: Request, session: SessionDep, settings: SettingsDep, library: LibraryDep, catalogue: CatalogueDep,
                     creator: JobCreator):
    """Queue the job and go to its page; or show the form again with a message at each bad field.

    The "Preview the data" button shows the rows the job would train on without queueing anything.
    """
    # Starlette caps a form field at 1 MB by default; a pasted dataset may be larger (the body limit still holds)
    fields = await request.form(max_part_size=settings.max_body_bytes)
    submitted = {key: value for key, value in fields.items() if isinstance(value, str)}
    values = forms.prefill(forms.JOB_FIELDS, submitted, forms.JOB_INPUTS)
    if submitted.pop("action", "") == "preview":
        preview, errors = await off_loop(data_preview, settings, submitted)
        context = _form_context(settings, library, catalogue, values, errors) | {"preview": preview}
        return render(request, "jobs/new.html", context, block="job_form", status_code=422 if errors else 200)
    outcome = forms.job_form(submitted)
    errors = outcome.errors
    if not errors:
        try:
            job = await off_loop(service.create_job, session, settings, catalogue, outcome.request,
                                 owner_id=creator.id if creator else None)
        except FieldError as error:
            errors = by_field([error.as_error()])
    if errors:
        return render(request, "jobs/new.html", _form_context(settings, library, catalogue, values, errors),
                      block="job_form", status_code=422)
    location = f"/jobs/{job.id}"
    if is_htmx(request):
        return HTMLResponse("", headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job: JobDep, session: SessionDep, library: LibraryDep, settings: SettingsDep, viewer: ViewerDep):
    """A job: config, live chart and progress, samples, predicted vs measured, download and cancel."""
    public = service.job_public(session, job)
    metrics = service.metrics_after(session, job.id)
    scored_by_exact_match = datasets.dataset_tasks(settings.content_dir).get(public.dataset) == "exact_match"
    return render(request, DETAIL_TEMPLATE, detail_context(public, metrics[-1] if metrics else None, viewer.can_control(job), metrics) | {
        "metrics": metrics,
        # decided by the dataset, so a live page has the column before its first evaluation arrives
        "has_exact_match": scored_by_exact_match or any(point.exact_match is not None for point in metrics),
        "chart_points": [point.model_dump(mode="json", include=CHART_FIELDS) for point in metrics],
        "param_slugs": set(library.params),
        "live": public.status not in FINISHED_STATUSES,
        "rerun_query": urlencode(as_text(public.config.lora) | as_text(public.config.training)
                                 | {"model": public.model, "dataset": public.dataset}),
    })


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel_job(request: Request, job: ControlledJobDep, session: SessionDep):
    """Ask the job to stop; back to its page (htmx swaps the progress block)."""
    try:
        job = service.request_cancel(session, job)
    except service.JobConflict:
        pass  # it finished while the user clicked: its page says how
    if is_htmx(request):
        public = service.job_public(session, job)
        return render(request, DETAIL_TEMPLATE, detail_context(public, service.metric_at(session, job.id, public.last_step or 0)), block="progress")
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs/{job_id}/events", response_class=EventStream)
async def job_page_events(
    request: Request,
    job_id: Annotated[int, Depends(existing_job_id)],
    engine: EngineDep,
    settings: SettingsDep,
    controls: Annotated[bool, Depends(job_controls)],
    after: Annotated[int | None, Query(ge=0, le=service.MAX_ID)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream:
    """The API's event stream plus the page's progress and results blocks as HTML for htmx to swap."""
    # with controls the blocks hold this browser's CSRF token (a live block's retry form posts without htmx), so they
    # are rendered for this stream; without, every such page of the job shares one rendering per step
    fragments = partial(render_live_blocks, can_control=controls, request=request)
    return EventStream(job_event_stream(engine, job_id, parse_resume_step(last_event_id, after), settings.poll_seconds,
                                         fragments, shared_fragments=not controls))


def detail_context(job: JobPublic, last_metric: MetricPublic | None, can_control: bool = True,
                   metrics: Sequence[MetricPublic] = ()) -> dict[str, Any]:
    """What the live blocks show: progress, the curve's flags (from `metrics`, the rows so far), results; controls to whoever may use them."""
    return {"job": job, "last_metric": last_metric, "eta_seconds": eta_seconds(job, last_metric), "can_control": can_control,
            "curve_flags": curve_flags(metrics)}


def curve_flags(metrics: Sequence[MetricPublic]) -> list[Flag]:
    """What the curve so far shows (app.calc.curves.flags); once per step for all of a stream's pages (Curve.memo)."""
    memo = metrics.memo if isinstance(metrics, Curve) else {}
    if "flags" not in memo:
        memo["flags"] = flags([point.model_dump() for point in metrics])
    return memo["flags"]


def eta_seconds(job: JobPublic, last_metric: MetricPublic | None) -> float | None:
    """Time left at the pace so far."""
    if job.status in FINISHED_STATUSES or not last_metric or not job.total_steps or not last_metric.elapsed_seconds:
        return None
    return last_metric.elapsed_seconds / last_metric.step * max(job.total_steps - last_metric.step, 0)


def render_live_blocks(job: JobPublic, last_metric: MetricPublic | None, metrics: Sequence[MetricPublic] = (),
                       can_control: bool = True, request: Request | None = None) -> dict[str, str]:
    """The detail page's live blocks as HTML, one SSE event each."""
    template = templates.get_template(DETAIL_TEMPLATE)
    context = template.new_context(detail_context(job, last_metric, can_control, metrics) | ({"request": request} if request else {}))
    return {name: "".join(template.blocks[name](context)) for name in LIVE_BLOCKS}
