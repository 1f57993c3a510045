"""Sign-in failures per address and per name: the limit, the window sliding, bounded memory, and /login answering 429."""

from __future__ import annotations

from app.accounts import throttle as throttle_module
from app.accounts.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eleventh_failure_in_ten_minutes_waits_until_the_oldest_leaves_the_window():
    clock = Clock()
    throttle = LoginThrottle(10, 600, clock)
    for _ in range(10):
        assert throttle.retry_after("10.0.0.1", "ada") == 0
        throttle.failed("10.0.0.1", "ada")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1", "ada") == 600 - 100
    assert throttle.retry_after("10.0.0.2", "ADA") == 500  # the name's counter, whatever the address and case
    assert throttle.retry_after("10.0.0.1", "bob") == 500  # the address's counter, whatever the name
    assert throttle.retry_after("10.0.0.2", "bob") == 0
    clock.now += 500
    assert throttle.retry_after("10.0.0.1", "ada") == 0


def test_a_success_clears_the_name_but_not_the_address():
    throttle = LoginThrottle(3, 600, Clock())
    for name in ("ada", "ada", "ada"):
        throttle.failed("10.0.0.1", name)
    throttle.succeeded("ada")
    assert throttle.retry_after("10.0.0.9", "ada") == 0
    assert throttle.retry_after("10.0.0.1", "ada") > 0


def test_memory_stays_bounded_under_many_names(monkeypatch):
    monkeypatch.setattr(throttle_module, "MAX_KEYS", 100)
    throttle = LoginThrottle(3, 600, Clock())
    for n in range(1000):
        throttle.failed("10.0.0.1", f"name{n}")
    assert len(throttle._failed) <= 100
