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
