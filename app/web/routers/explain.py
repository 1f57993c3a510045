"""Explain my adapter: paste or upload an adapter_config.json, get every key explained and the exact count."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.spec.errors import FieldError
from app.calc.dialects import parse_config_text
from app.calc.adapter_weights import WeightsHeader, header_of_file, header_of_text
from app.calc.explain import Explanation, explain
from app.spec.limits import MAX_WEIGHTS_HEADER_BYTES
from app.spec.text import parse_json
from app.web.deps import CatalogueDep, LibraryDep, SettingsDep, TreesDep
from app.web.guard import off_loop
from app.web.page_cache import render_page
from app.web.templating import render

router = APIRouter(include_in_schema=False)

TEMPLATE = "explain/explain.html"


def _parse_json(text: str, field: str, errors: dict[str, str], required: bool, yaml_too: bool = False) -> Any:
    """JSON (or YAML, for another tool's config) from a form field; a problem is recorded on the field."""
    if not text.strip():
        if required:
            errors[field] = "paste an adapter_config.json or choose the file"
        return None
    try:
        value = parse_json(text)
    except ValueError as error:
        if not yaml_too or text.lstrip()[:1] in ("{", "["):
            errors[field] = str(error)
            return None
        try:
            value = parse_config_text(text, (field,))
        except FieldError as yaml_error:
            errors[field] = f"{error}; {yaml_error.message}"
            return None
    if not isinstance(value, dict):
        errors[field] = "expected a JSON object ({ ... })"
        return None
    return value


def _context(library, values: dict[str, str], errors: dict[str, str], explanation: Explanation | None) -> dict[str, Any]:
    query = explanation.calculator_query if explanation else None
    return {
        "values": values,
        "errors": errors,
        "explanation": explanation,
        "result": explanation.result if explanation else None,
        "calculator_url": "/calculator?" + urlencode(query) if query else None,
        "param_slugs": set(library.params),
        "max_weights_header": MAX_WEIGHTS_HEADER_BYTES,
    }


@router.get("/explain", response_class=HTMLResponse)
def explain_form(request: Request, library: LibraryDep):
    """The paste/upload form."""
    return render_page(request, TEMPLATE, lambda: (_context(library, {}, {}, None), 200))


@router.post("/explain", response_class=HTMLResponse)
async def explain_submit(request: Request, catalogue: CatalogueDep, library: LibraryDep, settings: SettingsDep,
                         trees: TreesDep):
    """Explain the posted adapter_config.json (pasted, or uploaded as a file)."""
    form = await request.form(max_part_size=settings.max_body_bytes)  # Starlette's default stops at 1 MB
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    upload = form.get("adapter_file")
    if isinstance(upload, UploadFile) and upload.filename:
        values["adapter_config"] = (await upload.read()).decode("utf-8", errors="replace")
    errors: dict[str, str] = {}
    weights_file = form.get("adapter_weights_file")
    weights_content = None
    if isinstance(weights_file, UploadFile) and weights_file.filename:
        weights_content = await weights_file.read()  # without JavaScript: the whole file, within the body limit
    has_weights = weights_content is not None or bool(values.get("adapter_weights_header", "").strip())
    adapter_config = _parse_json(values.get("adapter_config", ""), "adapter_config", errors, required=not has_weights,
                                 yaml_too=True)
    model_config = _parse_json(values.get("model_config", ""), "model_config", errors, required=False)
    explanation = None
    if not errors:
        try:
            # off the event loop, under the request's budget: a pasted config may wait for the tree helper, and a
            # header of thousands of tensors takes a moment to check
            explanation = await off_loop(_explain_all, adapter_config, model_config, catalogue, trees, values,
                                         weights_content)
        except (FieldError, ValidationError) as error:
            field = error.loc[0] if isinstance(error, FieldError) else "adapter_config"
            errors[str(field)] = error.message if isinstance(error, FieldError) else str(error)
    status = 422 if errors else 200
    return render(request, TEMPLATE, _context(library, values, errors, explanation), block="explanation", status_code=status)


def _explain_all(adapter_config, model_config, catalogue, trees, values: dict[str, str], weights_content: bytes | None):
    """The weights' header read and checked (from the file, or the text the browser sent), then the explanation."""
    header = _weights_header(values, weights_content)
    return explain(adapter_config, model_config, catalogue, trees, weights=header)


def _weights_header(values: dict[str, str], weights_content: bytes | None) -> WeightsHeader | None:
    if weights_content is not None:
        return header_of_file(weights_content, ("adapter_weights_file",))
    text = values.get("adapter_weights_header", "")
    if not text.strip():
        return None
    size_text = values.get("adapter_weights_bytes", "").strip()
    if size_text and not (size_text.isascii() and size_text.isdigit() and len(size_text) <= 20):
        raise FieldError(("adapter_weights_bytes",), f"the file size must be a whole number of bytes, got {size_text[:40]!r}")
    return header_of_text(text, ("adapter_weights_header",), file_bytes=int(size_text) if size_text else None)
