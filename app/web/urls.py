"""Canonical and link-preview URLs: on LORAPEDIA_PUBLIC_URL when set, else relative (never from the Host header)."""

from __future__ import annotations

from fastapi import Request


def absolute_url(request: Request, path: str) -> str:
    """`path` on the configured public address; without one, `path` itself.

    The Host header is the client's to choose: a canonical link built from it would let a request (or a cache
    in front of the server) advertise another site as this page's address.
    """
    base = request.app.state.settings.public_url
    return base.rstrip("/") + path if base else path
