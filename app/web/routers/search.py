"""Search: /search?q=... is a page of its own; htmx swaps only the results block."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.content.search import MAX_QUERY_CHARS
from app.web.deps import LibraryDep
from app.web.page_cache import render_page
from app.web.templating import render

router = APIRouter()


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request, library: LibraryDep, q: str = ""):
    """Ranked results for `q` (exact names first, then BM25 with titles above bodies); a too-long query gets an inline message."""
    if len(q) > MAX_QUERY_CHARS:
        error = f"The search is {len(q)} characters long; at most {MAX_QUERY_CHARS} are searched. Shorten it."
        return render(request, "search/search.html", {"query": q, "hits": [], "error": error}, block="results", status_code=422)
    return render_page(request, "search/search.html",
                       lambda: ({"query": q, "hits": library.index.search(q) if q.strip() else []}, 200), block="results")
