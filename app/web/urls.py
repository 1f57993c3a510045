"""Absolute URLs for canonical links and link previews."""

from __future__ import annotations

from fastapi import Request


def absolute_url(request: Request, path: str) -> str:
    """`path` on the public address when one is configured (behind a proxy), else on the request's."""
    base = request.app.state.settings.public_url or str(request.base_url)
    return base.rstrip("/") + path
