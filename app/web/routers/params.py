"""Parameter pages: /params/<slug>, stable forever."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from app.content.links import sweep_url, try_it_url
from app.web.compare import Run, compare
from app.web.deps import LibraryDep
from app.spec.sweeps import field_groups
from app.web.routers.experiments import definition_query
from app.web.page_cache import render_page
from app.web.urls import absolute_url

router = APIRouter()


@router.get("/params/{slug}", response_class=HTMLResponse, include_in_schema=False)
def param_page(request: Request, slug: str, library: LibraryDep):
    """One parameter: facts, explanation, related pages, back-links and a "try it" link."""
    page = library.params.get(slug)
    if page is None:
        raise HTTPException(404, f"no parameter page is called {slug!r}")
    return render_page(request, "params/param.html", lambda: (_param_context(request, page, library), 200))


def _param_context(request: Request, page, library) -> dict:
    """What a parameter page shows: its facts and text, links, and its recorded sweep if it has one."""
    context = {
        "page": page,
        "meta": page.meta,
        "related": [library.params[name] for name in page.meta.related],
        "backlinks": library.backlinks.get(page.url, []),
        "try_it": try_it_url(page.slug, page.meta.kind),
        "canonical": absolute_url(request, page.url),
        "sweep_url": sweep_url(page.slug),
    }
    recorded = library.runs.get(page.slug)
    if recorded is not None:
        definition = recorded.definition
        runs = [Run(label=run.label, points=[point.model_dump() for point in run.metrics],
                    config=_swept(definition.base, definition.field, run.value),
                    trainable_params=run.trainable_params, peak_memory_bytes=run.peak_memory_bytes, status=run.status,
                    device=run.device) for run in recorded.runs]
        context |= compare(runs) | {
            "recorded": recorded,
            "run_yourself": "/experiments/new?" + definition_query(definition.field, definition.values, definition.base),
        }
    return context


def _swept(base: dict, field: str, value) -> dict:
    """The base job with the swept field set to value: a recorded run's whole config."""
    group = field_groups()[field]
    return {**base, group: {**base.get(group, {}), field: value}}
