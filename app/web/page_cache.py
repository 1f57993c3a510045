"""Rendered pages kept per URL for anonymous readers: pages that are a pure function of their URL and the loaded content.

Parameter pages, guides, search results and calculator views depend only on the query and on what start-up loaded
(content, catalogue, recorded runs), so an anonymous reader's page is rendered once and served again from memory.
The one per-browser part, the CSRF token, is rendered as a placeholder and put in per request. A signed-in reader
(whose name the header shows) always gets a fresh rendering, and only 200 pages are kept. The cache is a bounded
LRU: at most MAX_PAGES pages, none larger than MAX_PAGE_BYTES, so distinct query strings cannot grow it without limit.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from app.web.security import csrf_token
from app.web.templating import is_htmx, render

MAX_PAGES = 256
MAX_PAGE_BYTES = 256 * 1024
# urlsafe characters like a real token, so escaping treats both alike; random, so no page text can contain it
TOKEN_PLACEHOLDER = "csrf-placeholder-" + secrets.token_urlsafe(18)


class PageCache:
    """An LRU of (status, HTML) by request key; safe to share between the threads that run sync routes."""

    def __init__(self, max_pages: int = MAX_PAGES, max_page_bytes: int = MAX_PAGE_BYTES):
        self.max_pages, self.max_page_bytes = max_pages, max_page_bytes
        self._pages: OrderedDict[tuple, tuple[int, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # pages served from the cache

    def get(self, key: tuple) -> tuple[int, str] | None:
        with self._lock:
            page = self._pages.get(key)
            if page is None:
                return None
            self._pages.move_to_end(key)
            self.hits += 1
            return page

    def put(self, key: tuple, status: int, html: str) -> None:
        if len(html) > self.max_page_bytes:
            return
        with self._lock:
            self._pages[key] = (status, html)
            self._pages.move_to_end(key)
            while len(self._pages) > self.max_pages:
                self._pages.popitem(last=False)


def render_page(request: Request, name: str, build: Callable[[], tuple[dict[str, Any], int]], *,
                block: str | None = None) -> HTMLResponse:
    """render(name, *build()) for a page that is a pure function of its URL; anonymous readers get it from the cache.

    `build` returns the template context and the status code; it runs only when the page is not cached.
    """
    cache: PageCache | None = getattr(request.app.state, "page_cache", None)
    if cache is None or getattr(request.state, "account", None) is not None:
        context, status = build()
        return render(request, name, context, block=block, status_code=status)
    # the Host header is in the key: without LORAPEDIA_PUBLIC_URL a loopback server's canonical links follow it
    key = (name, block if is_htmx(request) else None, request.url.path, request.url.query, request.headers.get("host"))
    token = csrf_token(request)  # this browser's token; sets its cookie if new
    page = cache.get(key)
    if page is None:
        context, status = build()
        state = request.scope["state"]  # where csrf_token() keeps this request's token
        state["csrf_token"] = TOKEN_PLACEHOLDER
        try:
            response = render(request, name, context, block=block, status_code=status)
        finally:
            state["csrf_token"] = token
        page = (status, bytes(response.body).decode())
        if status == 200:  # a refusal may be passing (the tree helper restarting, a timeout): it is never kept
            cache.put(key, *page)
    status, html = page
    return HTMLResponse(html.replace(TOKEN_PLACEHOLDER, token), status_code=status)
