"""The heartbeat under a running reaper: a job longer than several leases survives, and dies without it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

import app.jobs.worker as worker_module
from app.jobs import queue
from app.jobs.tables import Job, JobStatus
from app.jobs.queue import LEASE_EXPIRED_ERROR
from tests.jobs.test_worker_loop import ScriptedTrainer, start_worker, wait_for_status  # noqa: F401 (a fixture)

LEASE_SECONDS = 0.8
LEASES_PER_JOB = 4
STEP_SECONDS = 0.05


@pytest.fixture
def long_job(settings, engine, enqueue, start_worker):
    """A job of LEASES_PER_JOB leases on one worker while a second, idle worker reaps every poll."""
    settings.lease_seconds, settings.heartbeat_seconds, settings.poll_seconds = LEASE_SECONDS, 0.1, 0.05

    def run() -> tuple[int, list[JobStatus], float]:
        job_id = enqueue()
        steps = int(LEASES_PER_JOB * LEASE_SECONDS / STEP_SECONDS)
        trainer = ScriptedTrainer(steps=steps, step_seconds=STEP_SECONDS)
        start_worker(trainer)
        assert trainer.started.wait(10)
        start_worker(ScriptedTrainer(steps=1))  # an idle worker reaps expired leases on every poll
        started = time.monotonic()
        seen: list[JobStatus] = []
        while not seen or seen[-1] == JobStatus.running:
            assert time.monotonic() - started < 60, "the job never ended"
            with Session(engine) as session:
                seen.append(session.get(Job, job_id).status)
            time.sleep(0.05)
        return job_id, seen, time.monotonic() - started

    return run


def test_a_job_longer_than_several_leases_stays_running_while_the_reaper_runs(engine, long_job):
    job_id, seen, seconds = long_job()
    assert seen[-1] == JobStatus.succeeded and set(seen[:-1]) == {JobStatus.running}
    assert seconds > 2 * LEASE_SECONDS, "the job must outlive its lease for the test to mean anything"
    assert wait_for_status(engine, job_id, {JobStatus.succeeded}).error is None


def test_without_a_heartbeat_the_reaper_interrupts_the_same_job(engine, long_job, monkeypatch):
    monkeypatch.setattr(worker_module.JobRun, "_heartbeat", lambda self: None)
    job_id, seen, seconds = long_job()
    assert seen[-1] == JobStatus.interrupted
    assert seconds < LEASES_PER_JOB * LEASE_SECONDS, "reaped once its lease ran out, not after the job ended"
    job = wait_for_status(engine, job_id, {JobStatus.interrupted})
    assert job.error == LEASE_EXPIRED_ERROR


def test_a_heartbeat_that_fails_a_few_times_keeps_beating(engine, long_job, monkeypatch):
    """A database hiccup in one beat is logged and retried; the next beats still keep the lease."""
    renew, failures = queue.renew_lease, []

    def flaky_renew(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE job", {}, Exception("database is locked"))
        return renew(*args, **kwargs)

    monkeypatch.setattr(queue, "renew_lease", flaky_renew)
    job_id, seen, _ = long_job()
    assert len(failures) == 2 and seen[-1] == JobStatus.succeeded
    assert wait_for_status(engine, job_id, {JobStatus.succeeded}).error is None
