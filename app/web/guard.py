"""Bounds on each request: body size (413), a time budget for its CPU work, and stopping that work when the client leaves."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import deadline
from app.web.templating import is_htmx, render

logger = logging.getLogger(__name__)
T = TypeVar("T")

# An oversized body is read and dropped up to this many times the limit, so a client still sending gets the 413
# (a server that stops reading makes the client's send fail with a reset before it reads the answer).
DRAIN_FACTOR = 4
DRAIN_SECONDS = 10.0
BUSY_RETRY_SECONDS = 5


def _wants_json(scope: Scope) -> bool:
    request = Request(scope)
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def too_large_response(scope: Scope, size: str, limit: int) -> Response:
    """413 naming the body and the limit: JSON for the API, a page for people."""
    reason = f"request body is {size} bytes; the limit is {limit:,} bytes"
    headers = {"Connection": "close"}
    if _wants_json(scope):
        return JSONResponse({"detail": [{"loc": ["body"], "msg": reason, "type": "body_too_large"}]}, 413, headers)
    request = Request(scope)
    errors = [{"field": "", "msg": reason}]
    if is_htmx(request):
        headers |= {"HX-Retarget": "body", "HX-Reswap": "innerHTML"}
    return render(request, "pages/bad_request.html", {"errors": errors}, status_code=413, headers=headers)


class RequestGuard:
    """Read the body up to the limit (413 beyond it), then run the app under a work budget, watching for disconnect.

    The app sees the whole body at once; afterwards its `receive` reports `http.disconnect` when the client
    goes, which also cancels the budget so CPU work in a worker thread stops at its next check.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, work_seconds: float):
        self.app, self.max_body_bytes, self.work_seconds = app, max_body_bytes, work_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            if headers.get(b"expect", b"").lower() != b"100-continue":  # else the client waits and sends nothing
                await self._drain(receive, int(declared))
            await too_large_response(scope, f"{int(declared):,}", self.max_body_bytes)(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_body_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, None)
                await too_large_response(scope, f"over {self.max_body_bytes:,}", self.max_body_bytes)(scope, receive, send)
                return
            more_body = message.get("more_body", False)
        await self._run(scope, b"".join(chunks), receive, send)

    async def _drain(self, receive: Receive, declared: int | None) -> None:
        """Read and drop the rest of an oversized body, within bounds, so the client can read the 413."""
        budget = DRAIN_FACTOR * self.max_body_bytes
        if declared is not None and declared > budget:
            return
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                dropped = 0
                while dropped <= budget:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    dropped += len(message.get("body", b""))
        except TimeoutError:
            return

    async def _run(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        budget = deadline.Budget(self.work_seconds)
        gone = asyncio.Event()
        delivered = False

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    budget.cancelled.set()
                    return

        async def app_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        watcher = asyncio.create_task(watch())
        try:
            with deadline.limited(budget):  # copied into the worker threads that run the endpoints
                await self.app(scope, app_receive, send)
        finally:
            watcher.cancel()


async def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run CPU work in a worker thread under the request's budget (an async endpoint must never compute inline)."""
    return await run_in_threadpool(functools.partial(function, *args, **kwargs))


def _budget_exceeded(request: Request, exc: deadline.BudgetExceeded) -> Response:
    reason = f"{exc}; the server limits each request's computation. Try a smaller input, or again in a moment"
    headers = {"Retry-After": str(BUSY_RETRY_SECONDS)}
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"detail": reason}, 503, headers)
    return render(request, "pages/bad_request.html", {"errors": [{"field": "", "msg": reason}]}, status_code=503, headers=headers)


def _cancelled(request: Request, exc: deadline.WorkCancelled) -> Response:
    logger.info("work for %s stopped: the client disconnected", request.url.path)
    return Response(status_code=499)


def install(app: FastAPI, max_body_bytes: int, work_seconds: float) -> None:
    """The guard middleware and the answers for stopped work."""
    app.add_exception_handler(deadline.BudgetExceeded, _budget_exceeded)
    app.add_exception_handler(deadline.WorkCancelled, _cancelled)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, work_seconds=work_seconds)
