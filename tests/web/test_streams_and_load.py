"""Fan-out and shutdown: subscribers of one job share one database poll; SIGTERM ends open streams at once; 200 readers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import event

from app.jobs import queue
from app.web.sse import hub_for, job_event_stream
from tests.jobs.sse_client import parse_events

SMALL_JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 50}}
SUBSCRIBERS = 20



def in_own_loop(coroutine):
    """asyncio.run in a thread of its own: Playwright's sync API may hold an event loop in this one (browser tests)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def running_job(client, job: dict, total_steps: int, worker: str = "w") -> int:
    """A job submitted through the API, claimed and started by `worker` (the test plays the worker's part)."""
    job_id = client.post("/api/jobs", json=job).json()["id"]
    assert queue.claim_next_job(client.app.state.engine, worker, 60) == job_id
    queue.record_start(client.app.state.engine, job_id, worker, {"total_steps": total_steps, "device": "cpu float32"})
    return job_id


def test_subscribers_of_one_job_share_one_database_poll(app, client, settings):
    job_id = running_job(client, SMALL_JOB, 50)
    engine = app.state.engine
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    async def subscriber(received: list[int]) -> None:
        async for chunk in job_event_stream(engine, job_id, 0, settings.poll_seconds):
            received.extend(int(item.id) for item in parse_events(chunk.decode().splitlines()) if item.event == "metric")
            if len(received) == 5:
                return

    async def run() -> list[list[int]]:
        received: list[list[int]] = [[] for _ in range(SUBSCRIBERS)]
        tasks = [asyncio.create_task(subscriber(steps)) for steps in received]
        await asyncio.sleep(0.5)
        for step in range(1, 6):  # the worker's part: a metric row every 0.1 s
            await asyncio.to_thread(queue.append_metric, engine, job_id, {"step": step, "train_loss": 1.0})
            await asyncio.sleep(0.1)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return received

    started = time.monotonic()
    received = in_own_loop(run())
    elapsed = time.monotonic() - started
    assert received == [[1, 2, 3, 4, 5]] * SUBSCRIBERS
    metric_reads = sum("FROM metric_point" in statement and "max(" not in statement for statement in statements)
    polls = elapsed / settings.poll_seconds
    # one shared poll reads the metrics once per interval; a poll per subscriber would read them 20 times as often
    assert metric_reads <= polls + 5, (metric_reads, polls)
    assert not hub_for(engine).feeds  # the feed stopped with its last subscriber


def test_pages_without_controls_share_one_rendering_of_the_live_blocks_per_step(app, client, settings):
    job_id = running_job(client, SMALL_JOB, 50)
    engine = app.state.engine
    renderings: list[int | None] = []

    def render(job, last_metric, metrics) -> dict[str, str]:
        renderings.append(last_metric.step if last_metric else None)
        return {"progress": f"<p>step {last_metric.step if last_metric else 0} of {len(metrics)} rows</p>"}

    async def subscriber(received: list) -> None:
        async for chunk in job_event_stream(engine, job_id, 0, settings.poll_seconds, render, shared_fragments=True):
            received.extend((item.event, item.data) for item in parse_events(chunk.decode().splitlines()) if item.event != "status")
            if ("progress", "<p>step 3 of 3 rows</p>") in received:
                return

    async def run() -> list[list]:
        received: list[list] = [[] for _ in range(SUBSCRIBERS)]
        tasks = [asyncio.create_task(subscriber(events)) for events in received]
        await asyncio.sleep(0.5)
        for step in range(1, 4):
            await asyncio.to_thread(queue.append_metric, engine, job_id, {"step": step, "train_loss": 1.0})
            await asyncio.sleep(0.3)  # each step read by its own poll
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return received

    received = in_own_loop(run())
    assert all(events == received[0] for events in received), "every page got the same events"
    assert [data for event, data in received[0] if event == "progress"][-1] == "<p>step 3 of 3 rows</p>"
    assert [event for event, _ in received[0]].count("metric") == 3
    # one rendering per step the feed moved to (and one before any metric), not one per page
    assert sorted(renderings, key=str) == sorted(set(renderings), key=str) and len(renderings) <= 4, renderings


def test_sigterm_ends_open_event_streams_at_once(server_factory):
    server = server_factory()  # no worker: the job stays queued and its stream would stay open for good
    job_id = httpx.post(f"{server.url}/api/jobs", json=SMALL_JOB).json()["id"]
    events: list = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{server.url}/api/jobs/{job_id}/events", timeout=60) as response:
            for item in parse_events(response.iter_lines()):
                events.append(item)
                opened.set()

    listeners = [threading.Thread(target=listen, daemon=True) for _ in range(5)]
    for listener in listeners:
        listener.start()
    assert opened.wait(20)
    time.sleep(0.5)  # every listener connected
    stopping = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    assert time.monotonic() - stopping < 5, server.log()
    for listener in listeners:
        listener.join(5)
        assert not listener.is_alive()
    assert {item.event for item in events} == {"status"}


@pytest.mark.slow
def test_200_concurrent_page_readers_get_no_errors(server_factory):
    server = server_factory()
    for _ in range(5):
        httpx.post(f"{server.url}/api/jobs", json=SMALL_JOB)

    async def read_all() -> list[int]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as http:
            paths = ["/jobs", "/api/jobs", "/jobs/1", "/api/jobs/1/metrics"] * 50
            return [response.status_code for response in await asyncio.gather(*(http.get(path) for path in paths))]

    statuses = in_own_loop(read_all())
    assert statuses == [200] * 200, sorted(set(statuses))
    assert "QueuePool" not in server.log()
