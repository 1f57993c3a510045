"""Search: /search?q=... is a page of its own; htmx swaps only the results block."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.web.deps import LibraryDep
from app.web.templating import render

router = APIRouter()


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request, library: LibraryDep, q: Annotated[str, Query(max_length=200)] = ""):
    """Ranked results for `q` (a title hit beats a body hit)."""
    hits = library.index.search(q) if q.strip() else []
    return render(request, "search/search.html", {"query": q, "hits": hits}, block="results")
