"""LISTEN/NOTIFY on PostgreSQL: an idle worker and a job's event stream wake on a notice, long before their poll interval."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from app.jobs import queue
from app.jobs.db import init_db, make_engine
from app.jobs.notify import CHANNEL
from app.jobs.tables import Job, JobStatus
from app.jobs.worker import run_worker
from app.settings import Settings
from tests.jobs.sse_client import parse_events
from tests.jobs.test_postgres import postgres_url  # noqa: F401 - the module's private cluster fixture
from tests.jobs.test_worker_loop import ScriptedTrainer, wait_for_status

pytestmark = pytest.mark.postgres

LONG_POLL_SECONDS = 30  # a wake-up in a few seconds can only be the notice


def listeners(engine) -> int:
    """Connections whose last statement was LISTEN on the channel."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE query = :listen"),
                                  {"listen": f"LISTEN {CHANNEL}"}).scalar()


def wait_for_listeners(engine, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while listeners(engine) < count:
        assert time.monotonic() < deadline, "nothing LISTENs on the channel"
        time.sleep(0.1)


def add_job(engine, status: JobStatus = JobStatus.queued) -> int:
    with Session(engine) as session:
        job = Job(model="tiny-llama", dataset="addition", config={"lora": {"r": 4}, "training": {}}, status=status,
                  worker_id="elsewhere" if status == JobStatus.running else None)
        session.add(job)
        session.commit()
        return job.id


def test_an_idle_worker_claims_a_new_job_on_the_notice_not_at_its_next_poll(postgres_url, tmp_path):  # noqa: F811
    settings = Settings(var_dir=tmp_path / "var", database_url=postgres_url, poll_seconds=LONG_POLL_SECONDS)
    engine = make_engine(settings)
    init_db(engine)
    before = listeners(engine)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings, lambda: ScriptedTrainer(steps=1)), kwargs={"stop": stop}, daemon=True)
    worker.start()
    try:
        wait_for_listeners(engine, before + 1)
        time.sleep(1.0)  # the worker has found the queue empty and waits out its 30 s interval
        queued_at = time.monotonic()
        job_id = add_job(engine)
        wait_for_status(engine, job_id, {JobStatus.running, JobStatus.succeeded}, timeout=LONG_POLL_SECONDS / 3)
        waited = time.monotonic() - queued_at
    finally:
        stop.set()
        worker.join(timeout=10)
        engine.dispose()
    assert waited < 5, f"claimed {waited:.1f} s after queueing"
    assert not worker.is_alive()


def test_a_job_stream_sends_a_new_metric_row_on_the_notice_not_at_its_next_poll(postgres_url, server_factory, tmp_path):  # noqa: F811
    server = server_factory(env={"DATABASE_URL": postgres_url, "LORAPEDIA_POLL_SECONDS": str(LONG_POLL_SECONDS)})
    engine = make_engine(Settings(var_dir=tmp_path / "check", database_url=postgres_url))
    wait_for_listeners(engine, 1)
    job_id = add_job(engine, JobStatus.running)
    arrivals: dict[int, float] = {}

    def follow() -> None:
        with httpx.stream("GET", f"{server.url}/api/jobs/{job_id}/events", timeout=LONG_POLL_SECONDS * 2) as response:
            for event in parse_events(response.iter_lines()):
                if event.event == "metric":
                    arrivals[int(event.id)] = time.monotonic()
                if event.event == "done" or len(arrivals) == 2:
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(2.0)  # the stream is open and its shared poll waits out its 30 s interval
    written = {}
    for step in (1, 2):
        written[step] = time.monotonic()
        queue.append_metric(engine, job_id, {"step": step, "train_loss": 1.0, "learning_rate": 1e-3})
        time.sleep(1.0)
    reader.join(timeout=LONG_POLL_SECONDS / 3)
    with Session(engine) as session:  # leave no running job behind for the other tests on this cluster
        session.get(Job, job_id).status = JobStatus.cancelled
        session.commit()
    engine.dispose()
    assert sorted(arrivals) == [1, 2], server.log()
    lags = [arrivals[step] - written[step] for step in (1, 2)]
    assert max(lags) < 3, f"rows arrived {lags} s after they were written"
