"""The one error shape of every input: a field (`loc`) and a reason (`msg`), whatever the source."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

# Location parts that group fields but are not a field a person can change.
GROUPS = frozenset({"body", "lora", "training", "query"})


class FieldError(ValueError):
    """Input that breaks a rule: `loc` names the field (as a 422 body does), `message` says why."""

    def __init__(self, loc: Iterable[str | int], message: str, kind: str = "value_error") -> None:
        self.loc = tuple(loc)
        self.message = message
        self.kind = kind
        super().__init__(f"{'.'.join(str(part) for part in self.loc)}: {message}")

    def as_error(self, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
        """The error in the shape FastAPI uses for request validation errors."""
        return {"loc": [*prefix, *self.loc], "msg": self.message, "type": self.kind}


def conflict(field: str, message: str, value: Any, title: str = "Spec") -> ValidationError:
    """A cross-field error reported on `field` (raise it from a model validator), so forms show it at the right input."""
    detail = InitErrorDetails(type=PydanticCustomError("conflict", message), loc=(field,), input=value)
    return ValidationError.from_exception_data(title, [detail])


def describe(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of an input for an error message: huge numbers, long strings and nesting stay short."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        digits = value.bit_length() * 0.30103
        return repr(value) if digits < limit else f"a number of about {digits:.0f} digits"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit - 5]}...' ({len(value)} characters)"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, (list, tuple)):
        return "a JSON list"
    return f"a {type(value).__name__}"


def bound(value: Any) -> str:
    """A bound as people read it: integers in full with separators (4,294,967,295), floats short (1e-08)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


_BUILTIN_MESSAGES: dict[str, str] = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "literal_error": "must be one of {expected}",
    "too_long": "holds {actual_length} items; at most {max_length} are allowed",
    "string_too_long": "is {input_length} characters long; at most {max_length} are allowed",
    "string_too_short": "must not be empty",
    "missing": "is required",
    "extra_forbidden": "is not a field here",
}


def message(detail: Mapping[str, Any]) -> str:
    """The reason of one pydantic error detail, worded the same for the API, forms and jobs."""
    kind = str(detail.get("type", ""))
    # (custom error types of app.spec never reuse these pydantic names; tests/spec hold that)
    template = _BUILTIN_MESSAGES.get(kind)
    if template is None or "input" not in detail:  # our own messages: custom errors, FieldError details
        return str(detail.get("msg", "")).removeprefix("Value error, ")
    context = {key: bound(value) for key, value in (detail.get("ctx") or {}).items()}
    context.setdefault("input_length", len(detail["input"]) if isinstance(detail.get("input"), str) else "?")
    text = template.format_map(_Missing(context))
    if kind not in ("missing", "extra_forbidden", "too_long", "string_too_long", "string_too_short"):
        text += f", got {describe(detail.get('input'))}"
    return text


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def errors_of(error: ValidationError | FieldError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Every problem of a failed validation as [{loc, msg, type}], JSON-safe."""
    if isinstance(error, FieldError):
        details = [error.as_error(prefix)]
    else:
        details = [{"loc": [*prefix, *item["loc"]], "msg": message(item), "type": item["type"]} for item in error.errors()]
    return [{"loc": [_json_safe(part) for part in item["loc"]], "msg": item["msg"], "type": str(item["type"])} for item in details]


def field_name(loc: Iterable[Any]) -> str:
    """The form input a location points at: its first part that is not a group (lora, training, body)."""
    names = [part for part in loc if isinstance(part, str) and part not in GROUPS]
    return names[0] if names else "form"


def by_field(errors: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Errors keyed by form input, the first reason per input."""
    result: dict[str, str] = {}
    for item in errors:
        result.setdefault(field_name(item["loc"]), item["msg"])
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int)) or value is None:
        return value
    return str(value)


def check_nesting(value: Any, loc: tuple[str | int, ...], what: str, limit: int = 64) -> None:
    """Refuse JSON nested deeper than `limit`: later steps recurse (json.dumps, repr) and would overflow the stack."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            raise FieldError(loc, f"{what} is nested more than {limit} levels deep; real files have a few levels", "too_deep")
        stack.extend((child, depth + 1) for child in children)
