"""JSON API of the encyclopedia: /api/params and /api/params/{slug}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from app.web.deps import LibraryDep

router = APIRouter(prefix="/api", tags=["encyclopedia"])


class ParamSummary(BaseModel):
    """One parameter in the index."""

    slug: str
    title: str
    kind: str
    summary: str
    url: str


class ParamDetail(ParamSummary):
    """One parameter: its front matter and its rendered body."""

    front_matter: dict[str, Any]
    html: str
    sections: list[dict[str, str]]


@router.get("/params", response_model=list[ParamSummary])
def list_params(library: LibraryDep) -> list[ParamSummary]:
    """Every parameter page: slug, title, kind and summary."""
    return [
        ParamSummary(slug=page.slug, title=page.title, kind=page.meta.kind, summary=page.meta.summary, url=page.url)
        for page in sorted(library.params.values(), key=lambda page: page.slug)
    ]


@router.get("/params/{slug}", response_model=ParamDetail, responses={404: {"description": "No such parameter"}})
def get_param(slug: str, library: LibraryDep) -> ParamDetail:
    """One parameter page's front matter and rendered HTML."""
    page = library.params.get(slug)
    if page is None:
        raise HTTPException(404, f"no parameter page is called {slug!r}")
    return ParamDetail(
        slug=page.slug,
        title=page.title,
        kind=page.meta.kind,
        summary=page.meta.summary,
        url=page.url,
        front_matter=page.meta.model_dump(mode="json"),
        html=page.html,
        sections=[{"anchor": section.anchor, "title": section.title} for section in page.sections],
    )
