"""Admit at most as many requests at once as the database pool has connections for; the rest wait their turn.

A request holds its session's connection from its first query until its session closes, which happens on a
worker thread after the response is built (also on a thread). With more requests in flight than connections,
threads that wait for a connection block the threads that would hand one back: 200 concurrent readers once
stalled the server until the pool timed out (HTTP 500). Requests beyond the limit now wait here, on the event
loop, before they take a thread or a connection. Event streams (they hold no session) and static files pass.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send


class RequestSlots:
    """ASGI middleware: at most `limit` database-using requests in flight."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/static/") or path.endswith("/events"):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)
