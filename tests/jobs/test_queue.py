"""Queue mechanics on SQLite: atomic claim under contention, lease renewal and expiry, metric rows."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from sqlmodel import Session, select

from app.jobs import queue
from app.jobs.db import make_engine
from app.jobs.tables import Job, JobStatus, MetricPoint


def test_claim_takes_the_oldest_queued_job_and_leases_it(engine, enqueue):
    first, second = enqueue(), enqueue()
    assert queue.claim_next_job(engine, "w1", lease_seconds=30) == first
    assert queue.claim_next_job(engine, "w2", lease_seconds=30) == second
    assert queue.claim_next_job(engine, "w3", lease_seconds=30) is None
    with Session(engine) as session:
        job = session.get(Job, first)
        assert (job.status, job.worker_id) == (JobStatus.running, "w1")
        assert job.lease_expires_at > job.heartbeat_at


def test_racing_workers_never_claim_a_job_twice(settings, engine, enqueue):
    job_ids = [enqueue() for _ in range(40)]
    claims: list[tuple[str, int]] = []
    lock = threading.Lock()
    start_together = threading.Barrier(4)

    def worker(name: str) -> None:
        own_engine = make_engine(settings)  # a worker process has its own engine and connections
        with own_engine.connect():
            pass
        start_together.wait(timeout=30)  # connected first, so no thread gets a head start on the queue
        while (job_id := queue.claim_next_job(own_engine, name, lease_seconds=30)) is not None:
            with lock:
                claims.append((name, job_id))
        own_engine.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for _, job_id in claims) == job_ids
    with Session(engine) as session:
        owners = {job.id: job.worker_id for job in session.exec(select(Job)).all()}
    assert all(owners[job_id] == name for name, job_id in claims)
    assert len(Counter(name for name, _ in claims)) > 1, "one worker took everything: no contention was tested"


def test_an_expired_lease_marks_the_job_interrupted_and_the_old_owner_loses_it(engine, enqueue):
    job_id = enqueue()
    queue.claim_next_job(engine, "w1", lease_seconds=0.2)
    assert queue.reap_expired_leases(engine) == []
    assert queue.renew_lease(engine, job_id, "w1", lease_seconds=0.2)
    assert not queue.renew_lease(engine, job_id, "someone-else", lease_seconds=0.2)
    time.sleep(0.3)
    assert queue.reap_expired_leases(engine) == [job_id]
    assert not queue.renew_lease(engine, job_id, "w1", lease_seconds=30)
    assert queue.is_stop_requested(engine, job_id, "w1")
    assert not queue.finish_job(engine, job_id, "w1", JobStatus.succeeded, {})
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job.status == JobStatus.interrupted
        assert "lease" in job.error


def test_a_repeated_metric_step_keeps_the_first_row(engine, enqueue):
    job_id = enqueue()
    queue.append_metric(engine, job_id, {"step": 1, "train_loss": 2.0, "unknown_key": "ignored"})
    queue.append_metric(engine, job_id, {"step": 1, "train_loss": 9.0})
    with Session(engine) as session:
        rows = session.exec(select(MetricPoint).where(MetricPoint.job_id == job_id)).all()
    assert [(row.step, row.train_loss) for row in rows] == [(1, 2.0)]


def test_finishing_says_whether_this_worker_still_ran_the_job_and_warns_only_when_not(engine, enqueue, caplog):
    owned, taken = enqueue(), enqueue()
    assert queue.claim_next_job(engine, "w1", lease_seconds=30) == owned
    assert queue.claim_next_job(engine, "w2", lease_seconds=30) == taken
    with caplog.at_level(logging.WARNING, logger="app.jobs.queue"):
        assert queue.finish_job(engine, owned, "w1", JobStatus.succeeded, {"final_train_loss": 0.5})
        assert caplog.records == []
        assert not queue.finish_job(engine, taken, "w1", JobStatus.succeeded, {})
    assert [record.getMessage() for record in caplog.records] == [f"job {taken} is no longer running on worker w1; not updated"]
    with Session(engine) as session:
        assert (session.get(Job, owned).status, session.get(Job, owned).final_train_loss) == (JobStatus.succeeded, 0.5)
        assert (session.get(Job, taken).status, session.get(Job, taken).worker_id) == (JobStatus.running, "w2")


def test_a_job_gone_from_the_database_stops_its_run(engine, enqueue):
    job_id = enqueue()
    queue.claim_next_job(engine, "w1", lease_seconds=30)
    assert not queue.is_stop_requested(engine, job_id, "w1")
    assert queue.is_stop_requested(engine, job_id + 1, "w1")


def test_a_dead_workers_running_jobs_and_only_its_own_are_marked_interrupted(engine, enqueue):
    # the host name holds "_", a LIKE wildcard: "web_1:12:" must not also match "webX1:12:" or "web_1:123:"
    dead, other_host, other_pid, finished = enqueue(), enqueue(), enqueue(), enqueue()
    for job_id, worker_id in [(dead, "web_1:12:aa"), (other_host, "webX1:12:bb"), (other_pid, "web_1:123:cc"), (finished, "web_1:12:dd")]:
        assert queue.claim_next_job(engine, worker_id, lease_seconds=60) == job_id
    assert queue.finish_job(engine, finished, "web_1:12:dd", JobStatus.succeeded, {})
    assert queue.interrupt_worker_jobs(engine, "web_1:12:", "interrupted: its worker process exited") == [dead]
    with Session(engine) as session:
        jobs = {job_id: session.get(Job, job_id) for job_id in (dead, other_host, other_pid, finished)}
    assert (jobs[dead].status, jobs[dead].error) == (JobStatus.interrupted, "interrupted: its worker process exited")
    assert jobs[dead].finished_at is not None
    assert [jobs[job_id].status for job_id in (other_host, other_pid, finished)] == [JobStatus.running, JobStatus.running,
                                                                                     JobStatus.succeeded]
    assert queue.interrupt_worker_jobs(engine, "web_1:12:", "again") == []  # nothing of it is running any more
