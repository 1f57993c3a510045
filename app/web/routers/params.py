"""Parameter pages: /params/<slug>, stable forever."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from app.content.links import try_it_url
from app.web.deps import LibraryDep
from app.web.templating import render
from app.web.urls import absolute_url

router = APIRouter()


@router.get("/params/{slug}", response_class=HTMLResponse, include_in_schema=False)
def param_page(request: Request, slug: str, library: LibraryDep):
    """One parameter: facts, explanation, related pages, back-links and a "try it" link."""
    page = library.params.get(slug)
    if page is None:
        raise HTTPException(404, f"no parameter page is called {slug!r}")
    context = {
        "page": page,
        "meta": page.meta,
        "related": [library.params[name] for name in page.meta.related],
        "backlinks": library.backlinks.get(page.url, []),
        "try_it": try_it_url(page.slug, page.meta.kind),
        "canonical": absolute_url(request, page.url),
    }
    return render(request, "params/param.html", context)
