"""Home page, guides and the health check."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from app.web.deps import LibraryDep
from app.web.page_cache import render_page
from app.web.templating import render
from app.web.urls import absolute_url

router = APIRouter()


@router.get("/healthz", tags=["meta"])
def healthz(library: LibraryDep) -> dict:
    """Liveness: the app is up and its content is loaded."""
    return {"status": "ok", "params": len(library.params), "guides": len(library.guides)}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request, library: LibraryDep):
    """What Lorapedia is, a search box, the symptoms with their troubleshooting guides, the guides, and parameters by kind."""
    return render_page(request, "pages/home.html", lambda: ({
        "groups": library.params_by_kind(),
        "guides": library.sorted_guides(),
        "troubleshooting": library.troubleshooting_guides(),
    }, 200))


@router.get("/guides/{slug}", response_class=HTMLResponse, include_in_schema=False)
def guide(request: Request, slug: str, library: LibraryDep):
    """One guide."""
    page = library.guides.get(slug)
    if page is None:
        raise HTTPException(404, f"no guide is called {slug!r}")
    return render_page(request, "pages/guide.html", lambda: ({
            "page": page,
            "related": [library.params[name] for name in page.meta.related],
            "backlinks": library.backlinks.get(page.url, []),
            "canonical": absolute_url(request, page.url),
        }, 200))


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def api_docs(request: Request):
    """The HTTP API, listed from the app's own OpenAPI schema (no CDN-hosted Swagger UI)."""
    schema = request.app.openapi()
    operations = [
        {"method": method.upper(), "path": path, "summary": operation.get("summary", ""), "description": operation.get("description", "")}
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    return render(request, "pages/api.html", {"operations": operations, "version": schema["info"]["version"]})
