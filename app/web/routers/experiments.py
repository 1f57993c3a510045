"""Sweeps and comparisons: POST /api/experiments, /experiments/new (defined by its URL), /experiments/{id}, /jobs/compare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field, ValidationError
from sqlmodel import Session

from app.content import datasets
from app.jobs import estimates, service
from app.jobs.tables import FINISHED_STATUSES, Experiment, JobPublic
from app.spec import FieldError
from app.spec.base import as_text
from app.spec.errors import errors_of
from app.spec.sweeps import MAX_VALUES, ExperimentCreate, SweepError, field_groups, proposed_values, value_label
from app.spec.text import format_value
from app.web import forms
from app.web.compare import MAX_COMPARED, Run, compare
from app.web.deps import CatalogueDep, LibraryDep, SessionDep, SettingsDep
from app.web.routers.api_jobs import NO_ROOM, refused
from app.web.templating import is_htmx, render

router = APIRouter()
CHART_FIELDS = ("step", "train_loss", "eval_loss", "exact_match", "tokens_per_second", "elapsed_seconds", "tokens_seen",
                "epoch", "learning_rate")
DEFAULT_FIELD = "r"


class ExperimentPublic(BaseModel):
    """An experiment as the API shows it, with its jobs in the order of its values."""

    id: int
    name: str
    field: str
    values: list[Any]
    base: dict[str, Any]
    jobs: list[JobPublic] = Field(description="One job per value, in the same order.")
    url: str = Field(description="The experiment's page.")
    definition_url: str = Field(description="/experiments/new prefilled with this sweep: a link that recreates it.")


def existing_experiment(experiment_id: int, session: SessionDep) -> Experiment:
    """The experiment with this id, or 404."""
    experiment = service.get_experiment(session, experiment_id)
    if experiment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no experiment {experiment_id}")
    return experiment


ExperimentDep = Annotated[Experiment, Depends(existing_experiment)]


def definition_query(field: str, values: list[Any], base: Mapping[str, Any], name: str | None = None) -> str:
    """The query string of /experiments/new that recreates a sweep: field, each value, then the base job's fields as text."""
    pairs: list[tuple[str, str]] = [("field", field), *(("value", format_value(value)) for value in values)]
    if name:
        pairs.append(("name", name))
    pairs += [(key, str(base[key])) for key in ("model", "dataset") if base.get(key)]
    for group in ("lora", "training"):
        pairs += [(key, format_value(value)) for key, value in (base.get(group) or {}).items()
                  if key != field and format_value(value) != forms.JOB_DEFAULT_TEXT.get(key)]
    return urlencode(pairs)


def experiment_public(session: Session, experiment: Experiment) -> ExperimentPublic:
    """The experiment with its jobs and its URLs."""
    return ExperimentPublic(
        id=experiment.id, name=experiment.name, field=experiment.field, values=experiment.values, base=experiment.base,
        jobs=service.experiment_jobs(session, experiment.id), url=f"/experiments/{experiment.id}",
        definition_url="/experiments/new?" + definition_query(experiment.field, experiment.values, experiment.base, experiment.name))


@router.post("/api/experiments", status_code=status.HTTP_201_CREATED, tags=["experiments"],
             summary="Sweep one job field over 2-5 values: one job per value, queued together",
             responses={422: {"description": "A value or base field breaks a rule; `detail` names each (values.N or base.<field>)"}, **NO_ROOM})
def create_experiment(request: ExperimentCreate, session: SessionDep, settings: SettingsDep, catalogue: CatalogueDep,
                      response: Response) -> ExperimentPublic:
    try:
        experiment = service.create_experiment(session, settings, catalogue, request)
    except SweepError as rejected:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{**item, "loc": ["body", *item["loc"]]}
                                                                    for item in rejected.errors]) from rejected
    except FieldError as rejected:
        raise refused(rejected) from rejected
    response.headers["Location"] = f"/api/experiments/{experiment.id}"
    return experiment_public(session, experiment)


@router.get("/api/experiments/{experiment_id}", tags=["experiments"], summary="An experiment and its jobs")
def read_experiment(experiment: ExperimentDep, session: SessionDep) -> ExperimentPublic:
    return experiment_public(session, experiment)


def _form_values(query: Mapping[str, str], values: list[str], field: str) -> dict[str, Any]:
    """The form's text: the base job's inputs, the swept field, its values (proposed when the URL gives none)."""
    base = forms.prefill(forms.JOB_FIELDS, query, ("model", "dataset", "name"))
    if not values:
        values = [format_value(value) for value in proposed_values(field)]
    return base | {"field": field, "values": values + [""] * (MAX_VALUES - len(values))}


def _form_context(settings, library, catalogue, session: Session, values: dict[str, Any],
                  errors: dict[str, str]) -> dict[str, Any]:
    models = catalogue.trainable(settings.allowed_models)
    field = values["field"]
    return {
        "fields": forms.JOB_FIELDS,
        "sweepable": list(field_groups()),
        "values": values,
        "errors": errors,
        "models": models,
        "datasets": datasets.list_datasets(settings.content_dir),
        "param_slugs": set(library.params),
        "swept": field,
        "estimate": _estimate(session, settings, values),
        "max_values": MAX_VALUES,
    }


def _estimate(session: Session, settings, values: dict[str, Any]) -> estimates.Estimate | None:
    """How long each job and the whole sweep should take, from what this instance measured; None when it cannot tell."""
    outcome = forms.job_form({key: value for key, value in values.items() if isinstance(value, str)})
    if outcome.request is None:
        return None
    jobs = sum(1 for value in values["values"] if value.strip())
    return estimates.estimate(session, settings, outcome.request, jobs=max(jobs, 1))


@router.get("/experiments/new", response_class=HTMLResponse, include_in_schema=False)
def new_experiment(request: Request, session: SessionDep, settings: SettingsDep, library: LibraryDep, catalogue: CatalogueDep):
    """The sweep form, its whole definition in the URL: ?field=r&value=4&value=16&model=...&learning_rate=...

    ?propose=1 replaces the values by the ones proposed for the field (the form's "propose values" button, without JavaScript).
    """
    query = request.query_params
    field = query.get("field") if query.get("field") in field_groups() else DEFAULT_FIELD
    typed = [] if query.get("propose") else [value for value in query.getlist("value")[:MAX_VALUES]]
    values = _form_values(query, typed, field)
    errors = {} if query.get("field") in (None, field) else {"field": f"{query.get('field')[:60]!r} cannot be swept; showing r"}
    return render(request, "experiments/new.html", _form_context(settings, library, catalogue, session, values, errors),
                  block="experiment_form")


@router.post("/experiments/new", response_class=HTMLResponse, include_in_schema=False)
async def submit_experiment(request: Request, session: SessionDep, settings: SettingsDep, library: LibraryDep,
                            catalogue: CatalogueDep):
    """Queue the sweep and go to its page; or the form again with each problem at its input."""
    form = await request.form()
    submitted = {key: value for key, value in form.items() if isinstance(value, str) and key != "value"}
    typed = [value for value in form.getlist("value")[:MAX_VALUES] if isinstance(value, str)]
    field = submitted.get("field") if submitted.get("field") in field_groups() else DEFAULT_FIELD
    values = _form_values(submitted, typed, field) | {"values": typed + [""] * (MAX_VALUES - len(typed))}
    group = field_groups()[field]
    base = forms.grouped(forms.JOB_FIELDS, {key: value for key, value in submitted.items() if key != field})
    payload = {"name": submitted.get("name") or None, "field": submitted.get("field", ""),
               "values": [value for value in typed if value.strip()],
               "base": {**base, "model": submitted.get("model", ""), "dataset": submitted.get("dataset") or None}}
    payload["base"].setdefault(group, {})
    errors: dict[str, str] = {}
    try:
        sweep = ExperimentCreate.model_validate(payload)
        experiment = service.create_experiment(session, settings, catalogue, sweep, from_text=True)
    except ValidationError as error:
        errors = _form_errors(errors_of(error), typed)
    except SweepError as error:
        errors = _form_errors(error.errors, typed)
    except FieldError as error:
        errors = _form_errors([error.as_error()], typed)
    if errors:
        context = _form_context(settings, library, catalogue, session, values, errors)
        return render(request, "experiments/new.html", context, block="experiment_form", status_code=422)
    location = f"/experiments/{experiment.id}"
    if is_htmx(request):
        return HTMLResponse("", headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def _form_errors(items: list[dict[str, Any]], typed: list[str]) -> dict[str, str]:
    """Errors keyed by form input: value-<n> for the nth non-empty value input, else the field name."""
    filled = [index for index, value in enumerate(typed) if value.strip()]
    errors: dict[str, str] = {}
    for item in items:
        loc = [part for part in item["loc"] if part not in ("body", "base", "lora", "training")]
        if loc[:1] == ["values"] and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(filled):
            key = f"value-{filled[loc[1]]}"
        elif loc[:1] == ["values"]:
            key = "values"
        else:
            key = str(loc[0]) if loc else "form"
        errors.setdefault(key, item["msg"])
    return errors


def job_runs(jobs: list[JobPublic], session: Session, labels: list[str] | None = None) -> list[Run]:
    """Each job as a run to compare, labelled by its swept value or its id."""
    runs = []
    for index, job in enumerate(jobs):
        points = [point.model_dump(include=set(CHART_FIELDS)) for point in service.metrics_after(session, job.id)]
        config = {"model": job.model, "dataset": job.dataset,
                  **job.config.model_dump(mode="json", exclude_none=True, include={"lora", "training"})}
        runs.append(Run(label=labels[index] if labels else f"job #{job.id}", points=points, config=config,
                        trainable_params=job.trainable_params, peak_memory_bytes=job.peak_memory_bytes,
                        status=job.status.value, device=job.device, job_id=job.id))
    return runs


@router.get("/experiments/{experiment_id}", response_class=HTMLResponse, include_in_schema=False)
def experiment_page(request: Request, experiment: ExperimentDep, session: SessionDep, library: LibraryDep):
    """A sweep: its jobs' curves overlaid, what differs, the results table and the computed caption; refreshes while running."""
    jobs = service.experiment_jobs(session, experiment.id)
    labels = [value_label(experiment.field, value) for value in experiment.values][: len(jobs)]
    context = compare(job_runs(jobs, session, labels)) | {
        "experiment": experiment,
        "live": any(job.status not in FINISHED_STATUSES for job in jobs),
        "param_slugs": set(library.params),
        "definition_query": definition_query(experiment.field, experiment.values, experiment.base, experiment.name),
        "refresh_url": f"/experiments/{experiment.id}",
    }
    return render(request, "experiments/detail.html", context, block="comparison")


def parse_ids(ids: str) -> list[int]:
    """'1,2,3' as job ids: 2 to MAX_COMPARED distinct whole numbers, else a 422 naming ids."""
    parts = [part.strip() for part in ids.split(",") if part.strip()][: MAX_COMPARED + 1]
    if not all(part.isdigit() and len(part) <= 19 for part in parts):
        raise _ids_error("must be job ids separated by commas, such as 1,2,3")
    numbers = list(dict.fromkeys(int(part) for part in parts))
    if not 2 <= len(numbers) <= MAX_COMPARED:
        raise _ids_error(f"name 2 to {MAX_COMPARED} different jobs, got {len(numbers)}")
    return numbers


def _ids_error(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": ["query", "ids"], "msg": reason, "type": "value_error"}])


@router.get("/jobs/compare", response_class=HTMLResponse, include_in_schema=False)
def compare_jobs(request: Request, session: SessionDep, library: LibraryDep,
                 ids: Annotated[str, Query(max_length=200, description="Job ids, comma-separated")] = ""):
    """Any 2-5 jobs side by side: curves overlaid, the fields that differ, results and a computed caption."""
    wanted = parse_ids(ids)
    jobs = service.jobs_by_id(session, wanted)
    missing = sorted(set(wanted) - {job.id for job in jobs})
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {', '.join(map(str, missing))}")
    context = compare(job_runs(jobs, session)) | {
        "experiment": None,
        "live": any(job.status not in FINISHED_STATUSES for job in jobs),
        "param_slugs": set(library.params),
        "refresh_url": f"/jobs/compare?ids={','.join(map(str, wanted))}",
    }
    return render(request, "experiments/detail.html", context, block="comparison")


def job_fields_query(job: JobPublic) -> dict[str, str]:
    """A job's fields as the text of the job and sweep forms."""
    return as_text(job.config.lora) | as_text(job.config.training) | {"model": job.model, "dataset": job.dataset}

