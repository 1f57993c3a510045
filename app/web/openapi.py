"""OpenAPI additions: the answers every route can give besides its own (404, 413, 403, 503 with Retry-After)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


# POST routes that compute under the request's time budget (app.web.guard)
BUDGETED = {"/api/calc", "/api/explain", "/api/jobs"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}
ERROR_BODY = {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}


def _add(responses: dict[str, Any], code: str, description: str, **extra: Any) -> None:
    responses.setdefault(code, {"description": description, "content": ERROR_BODY, **extra})


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Build the schema once, with the shared error answers added to each operation."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            for path, operations in document.get("paths", {}).items():
                for method, operation in operations.items():
                    responses = operation.setdefault("responses", {})
                    for answer in responses.values():
                        for content in answer.get("content", {}).values():
                            if "itemSchema" in content:  # an event stream is described event by event, not as one string
                                content.pop("schema", None)
                    if "{" in path:
                        _add(responses, "404", "Nothing has this id.")
                    if method in ("post", "put", "patch", "delete"):
                        _add(responses, "403", "Refused: the request came from another site (Origin or Sec-Fetch-Site).")
                        _add(responses, "413", f"The request body is over {max_body_bytes:,} bytes.")
                    if method == "post" and path in BUDGETED:
                        busy = "The computation ran past the per-request time budget and was stopped"
                        if "503" in responses:
                            responses["503"]["description"] = f"{responses['503']['description']}; or: {busy.lower()}."
                        _add(responses, "503", f"{busy}.", headers=RETRY_AFTER)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
