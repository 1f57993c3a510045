"""Error responses: JSON for the API, pages for people; 422s that name the field and the reason."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.settings import Settings
from app.spec.errors import message
from app.web.templating import is_htmx, render

logger = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    """API paths, and clients that ask for JSON, get JSON errors."""
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def validation_detail(errors: list[dict]) -> list[dict]:
    """Pydantic errors as JSON-safe {loc, msg, type}, worded as app.spec words them for forms and jobs too."""
    return [
        {"loc": [_json_safe(part) for part in error.get("loc", ())], "msg": message(error), "type": str(error.get("type", ""))}
        for error in errors
    ]


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return error_response(request, validation_detail(list(exc.errors())))


def error_response(request: Request, detail: list[dict]) -> Response:
    """A 422 listing each field and reason: JSON for the API, a page for a browser.

    Forms validate their own fields and answer inline; this page is for what never reaches a form's
    handler (a path like /jobs/abc, an unreadable body). An htmx request gets the page in
    place of the whole body, since the element it meant to swap cannot show it.
    """
    if wants_json(request):
        return JSONResponse({"detail": detail}, status_code=422)
    errors = [{"field": ".".join(str(part) for part in error["loc"][1:]), "msg": error["msg"]} for error in detail]
    headers = {"HX-Retarget": "body", "HX-Reswap": "innerHTML"} if is_htmx(request) else None
    return render(request, "pages/bad_request.html", {"errors": errors}, status_code=422, headers=headers)


# FastAPI's answer when it cannot decode a body at all (invalid UTF-8, JSON nested past the parser's limit).
UNREADABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == 400 and exc.detail == UNREADABLE_BODY:
        reason = "the body could not be read: it must be UTF-8 JSON nested less than about 1,000 levels deep"
        return error_response(request, [{"loc": ["body"], "msg": reason, "type": "body_unreadable"}])
    if exc.status_code == 404 and not wants_json(request):
        library = request.app.state.library
        missing = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        return render(
            request,
            "pages/not_found.html",
            {"missing": missing, "suggestions": library.suggest(missing), "detail": exc.detail},
            status_code=404,
        )
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def install(app: FastAPI, settings: Settings) -> None:
    """Register the error handlers on `app`."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


__all__ = ["error_response", "install", "validation_detail", "wants_json"]
