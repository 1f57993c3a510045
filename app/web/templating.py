"""Render a whole page, or one named block of it for htmx requests."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.settings import PROJECT_ROOT
from app.spec.text import format_value

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))


def human_bytes(value: float) -> str:
    """Bytes in binary units: 1.50 GiB (the `human_bytes` filter)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    return f"{value} B"


def short_count(value: int) -> str:
    """1.2M, 3.4B: for headings, with the exact figure beside them (the `short_count` filter)."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return str(value)


templates.env.filters["human_bytes"] = human_bytes
templates.env.filters["field_text"] = format_value
templates.env.filters["short_count"] = short_count


def is_htmx(request: Request) -> bool:
    """True when htmx sent the request (and does not want a full page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render template `name`; for an htmx request with `block`, only that block."""
    context = {"request": request, **(context or {})}
    if block is not None and is_htmx(request):
        template = templates.get_template(name)
        block_render = template.blocks[block]
        html = "".join(block_render(template.new_context(context)))
        return HTMLResponse(html, status_code=status_code, headers=headers)
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)
