"""A per-request time budget that long loops check cooperatively: set by the web layer, read by calc and content (pure)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class BudgetExceeded(Exception):
    """The work ran past its time budget (not a ValueError: the input was valid, the server stopped the work)."""

    def __init__(self, seconds: float):
        super().__init__(f"the computation took longer than its budget of {seconds:g} s and was stopped")
        self.seconds = seconds


class WorkCancelled(Exception):
    """The client went away: nobody will read the result."""


class Budget:
    """When the work must stop, and whether its client has gone."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.cancelled = threading.Event()

    def remaining(self) -> float:
        """Seconds left (0 when spent)."""
        return max(0.0, self.expires_at - time.monotonic())

    def check(self) -> None:
        """Raise if the budget is spent or the client has gone."""
        if self.cancelled.is_set():
            raise WorkCancelled()
        if time.monotonic() > self.expires_at:
            raise BudgetExceeded(self.seconds)


_current: ContextVar[Budget | None] = ContextVar("lorapedia_work_budget", default=None)


def current() -> Budget | None:
    """The budget of the work running in this context, if any."""
    return _current.get()


def check() -> None:
    """Stop the current work if its budget is spent or its client has gone (no budget: never stops)."""
    budget = _current.get()
    if budget is not None:
        budget.check()


def remaining(default: float) -> float:
    """Seconds left in the current budget, or `default` when none is set."""
    budget = _current.get()
    return default if budget is None else budget.remaining()


@contextmanager
def limited(budget: Budget) -> Iterator[Budget]:
    """Run the enclosed work under `budget`."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
