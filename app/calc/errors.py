"""CalcInputError: input the calculator cannot compute, with the field it concerns and why."""

from __future__ import annotations

from typing import Any


class CalcInputError(ValueError):
    """Bad input for the calculator: `loc` names the field (as in a 422 body), `message` the reason."""

    def __init__(self, loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> None:
        super().__init__(f"{'.'.join(str(part) for part in loc)}: {message}")
        self.loc = loc
        self.message = message
        self.kind = kind

    def as_error(self, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
        """The error in the shape FastAPI uses for request validation errors."""
        return {"loc": [*prefix, *self.loc], "msg": self.message, "type": self.kind}


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
            raise CalcInputError(loc, f"{what} is nested more than {limit} levels deep; real files have a few levels", "too_deep")
        stack.extend((child, depth + 1) for child in children)
