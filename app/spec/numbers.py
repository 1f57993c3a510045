"""finite_number: the one check every number of a spec field goes through before its range is checked."""

from __future__ import annotations

import math
import sys
from typing import Any

from pydantic_core import PydanticCustomError

from app.spec.errors import describe

FLOAT_MAX = sys.float_info.max  # about 1.8e308: beyond it a number has no float, so no arithmetic can use it


def finite_number(value: Any, what: str, rule: str = "a finite number") -> int | float:
    """`value` unchanged when it is a real number (not bool) that a float can hold and that is not NaN or infinite.

    Otherwise a PydanticCustomError naming `what` and `rule` (the range the caller wants), so pydantic reports it
    on the field as a 422. Python ints have no size limit: `math.isfinite(10**400)` raises OverflowError (a 500)
    instead of answering, hence the explicit range check.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number_type", f"{what} must be a number ({rule}), got {describe(value)}")
    if isinstance(value, int):
        if abs(value) > FLOAT_MAX:
            raise PydanticCustomError(
                "not_finite",
                f"{what} is {describe(value)}, beyond the range of a float (about 1.8e308); it must be {rule}",
            )
    elif not math.isfinite(value):
        raise PydanticCustomError("not_finite", f"{what} must be {rule}, got {value}")
    return value
