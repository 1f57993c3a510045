"""Error responses: JSON for the API, pages for people; 422s that name the field and the reason."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    handler (a path like /jobs/abc, a body over the size limit). An htmx request gets the page in
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


class BodySizeLimit:
    """Refuse request bodies over the limit with a 422 that says so, before the app reads them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    def _response(self, scope: Scope, size: str) -> Response:
        reason = f"request body is {size} bytes; the limit is {self.max_body_bytes} bytes"
        return error_response(Request(scope), [{"loc": ["body"], "msg": reason, "type": "body_too_large"}])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._response(scope, declared.decode())(scope, receive, send)
            return
        # A chunked body has no length up front: read it here, up to the limit, then hand it on.
        # (An error raised while the app reads the body would reach the client as a 400, not a 422.)
        chunks: list[bytes] = []
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_body_bytes:
                await self._response(scope, f"over {self.max_body_bytes}")(scope, receive, send)
                return
            more_body = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install(app: FastAPI, settings: Settings) -> None:
    """Register the error handlers and the body size limit on `app`."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)


__all__ = ["error_response", "install", "validation_detail", "wants_json"]
