"""Sign-in failures per address and per name: the limit, the window sliding, shared by web processes, pruned rows."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from app.accounts.tables import LoginFailure
from app.accounts.throttle import LoginThrottle
from app.jobs.db import init_db, make_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(settings):
    engine = make_engine(settings)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with Session(engine) as db:
        yield db


def test_the_eleventh_failure_in_ten_minutes_waits_until_the_oldest_leaves_the_window(session):
    clock = Clock()
    throttle = LoginThrottle(10, 600, clock)
    for _ in range(10):
        assert throttle.retry_after(session, "10.0.0.1", "ada") == 0
        throttle.failed(session, "10.0.0.1", "ada")
        clock.now += 10
    assert throttle.retry_after(session, "10.0.0.1", "ada") == 600 - 100
    assert throttle.retry_after(session, "10.0.0.2", "ADA") == 500  # the name's counter, whatever the address and case
    assert throttle.retry_after(session, "10.0.0.1", "bob") == 500  # the address's counter, whatever the name
    assert throttle.retry_after(session, "10.0.0.2", "bob") == 0
    clock.now += 500
    assert throttle.retry_after(session, "10.0.0.1", "ada") == 0


def test_a_success_clears_the_name_but_not_the_address(session):
    throttle = LoginThrottle(3, 600, Clock())
    for name in ("ada", "ada", "ada"):
        throttle.failed(session, "10.0.0.1", name)
    throttle.succeeded(session, "ada")
    assert throttle.retry_after(session, "10.0.0.9", "ada") == 0
    assert throttle.retry_after(session, "10.0.0.1", "ada") > 0


def test_two_web_processes_count_the_same_failures(settings, engine):
    """Each process has its own engine and throttle; a client cannot spread its attempts over them."""
    clock = Clock()
    other_engine = make_engine(settings)
    try:
        with Session(engine) as first, Session(other_engine) as second:
            throttles = (LoginThrottle(4, 600, clock), LoginThrottle(4, 600, clock))
            for attempt in range(4):
                throttles[attempt % 2].failed((first, second)[attempt % 2], "10.0.0.1", f"name{attempt}")
            assert throttles[0].retry_after(first, "10.0.0.1", "ada") == 600
            assert throttles[1].retry_after(second, "10.0.0.1", "ada") == 600
    finally:
        other_engine.dispose()


def test_failures_older_than_the_window_are_dropped_and_names_are_not_stored(session):
    clock = Clock()
    throttle = LoginThrottle(3, 600, clock)
    for n in range(50):
        throttle.failed(session, "10.0.0.1", f"name{n}")
    clock.now += 601
    throttle.failed(session, "10.0.0.2", "ada")
    rows = session.exec(select(LoginFailure)).all()
    assert len(rows) == 2 and {row.key_hash for row in rows} == set(throttle.keys("10.0.0.2", "ada"))
    assert all(len(row.key_hash) == 64 and "ada" not in row.key_hash for row in rows)
