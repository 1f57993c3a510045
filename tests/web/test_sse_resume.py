"""SSE resume against a RUNNING job: disconnect mid-run, reconnect with Last-Event-ID, every step exactly once."""

from __future__ import annotations

import asyncio

from sqlmodel import Session

from app.jobs import queue, service
from app.jobs.tables import JobStatus
from app.web.sse import METRIC_BATCH, hub_for, job_event_stream
from tests.jobs.sse_client import parse_events
from tests.web.test_streams_and_load import in_own_loop, running_job

JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 5}}
WORKER = "resume-test-worker"


def write_steps(engine, job_id: int, steps: range) -> None:
    """Play the worker's part: one metric row per optimizer step."""
    for step in steps:
        queue.append_metric(engine, job_id, {"step": step, "train_loss": 1.0 / step, "learning_rate": 1e-3})


def test_a_client_reconnecting_to_a_running_job_gets_every_step_once_across_batch_boundaries(settings, app, client):
    # a caught-up stream sleeps a whole poll: the tail below is written and the job finished within it, so the
    # stream's next read sees a finished job with more than a batch unread (a stream that stops at the first
    # finished snapshot would lose rows)
    settings.poll_seconds = 1.5
    engine = app.state.engine
    job_id = client.post("/api/jobs", json=JOB).json()["id"]
    assert queue.claim_next_job(engine, WORKER, 60) == job_id
    # more rows than one batch before each connection and after the job ends, so each stream reads batches back to back
    first_part, second_part, last = METRIC_BATCH + 20, 3 * METRIC_BATCH + 37, 4 * METRIC_BATCH + 80
    queue.record_start(engine, job_id, WORKER, {"total_steps": last, "device": "cpu float32"})
    write_steps(engine, job_id, range(1, first_part + 1))

    received: list[str] = []
    statuses: list[str] = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        for event in parse_events(response.iter_lines()):
            if event.event == "status":
                statuses.append(event.json()["status"])
            elif event.event == "metric":
                received.append(event.id)
                if event.id == str(first_part):
                    break  # the client drops the connection while the job still runs
    assert statuses and set(statuses) == {"running"}
    assert received == [str(step) for step in range(1, first_part + 1)]

    write_steps(engine, job_id, range(first_part + 1, second_part + 1))
    resumed: list[str] = []
    ended = None
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": received[-1]}) as response:
        for event in parse_events(response.iter_lines()):
            if event.event == "metric":
                resumed.append(event.id)
                if event.id == str(second_part):  # caught up: the worker writes over a batch more and finishes
                    write_steps(engine, job_id, range(second_part + 1, last + 1))
                    queue.finish_job(engine, job_id, WORKER, JobStatus.succeeded, {"final_train_loss": 0.1})
            elif event.event == "done":
                ended = event.json()["status"]
    assert ended == "succeeded"
    assert resumed == [str(step) for step in range(first_part + 1, last + 1)]
    assert received + resumed == [str(step) for step in range(1, last + 1)]


def test_a_stream_opened_before_the_first_metric_follows_the_job_to_its_end(settings, app, client):
    settings.poll_seconds = 0.05
    engine = app.state.engine
    job_id = client.post("/api/jobs", json=JOB).json()["id"]
    statuses: list[str] = []
    ended = None
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        for event in parse_events(response.iter_lines()):
            assert event.event != "metric"
            if event.event == "status":
                statuses.append(event.json()["status"])
                if statuses == ["queued"]:  # the worker's part: it claims the job, then stops it before any step
                    assert queue.claim_next_job(engine, WORKER, 60) == job_id
                    queue.finish_job(engine, job_id, WORKER, JobStatus.cancelled, {})
            elif event.event == "done":
                ended = event.json()["status"]
    assert statuses[0] == "queued" and ended == "cancelled"


def test_a_status_change_without_a_new_row_reaches_the_stream_at_once(settings, app, client):
    """Cancel requested on a running job: the page must say "cancelling" before the worker writes anything else."""
    settings.poll_seconds = 0.05
    engine = app.state.engine
    job_id = running_job(client, JOB, 5, WORKER)
    write_steps(engine, job_id, range(1, 3))

    async def follow() -> list[dict]:
        statuses: list[dict] = []
        async for chunk in job_event_stream(engine, job_id, 0, settings.poll_seconds):
            for event in parse_events(chunk.decode().splitlines()):
                if event.event == "status":
                    statuses.append(event.json())
                    if event.json()["cancel_requested"]:
                        return statuses
                    if len(statuses) == 1:
                        await asyncio.to_thread(cancel, job_id)
        return statuses

    def cancel(job_id: int) -> None:
        with Session(engine) as session:
            service.request_cancel(session, service.get_job(session, job_id))

    statuses = in_own_loop(asyncio.wait_for(follow(), 10))
    assert statuses[0]["cancel_requested"] is False and statuses[-1]["cancel_requested"] is True
    assert statuses[-1]["status"] == "running"


def test_a_late_subscriber_of_a_running_feed_gets_every_step_once(settings, app, client):
    """A second page opened while the feed has been polling for a while replays the rows the feed holds, each once."""
    settings.poll_seconds = 0.05
    engine = app.state.engine
    job_id = running_job(client, JOB, 40, WORKER)

    async def steps_until(last: int, received: list[int]) -> None:
        async for chunk in job_event_stream(engine, job_id, 0, settings.poll_seconds):
            received.extend(int(event.id) for event in parse_events(chunk.decode().splitlines()) if event.event == "metric")
            if received and received[-1] >= last:
                return

    async def run() -> tuple[list[int], list[int], int]:
        early: list[int] = []
        late: list[int] = []
        first = asyncio.create_task(steps_until(40, early))
        for step in range(1, 41):  # the worker's part, over several of the feed's polls
            await asyncio.to_thread(write_steps, engine, job_id, range(step, step + 1))
            await asyncio.sleep(0.02)
            if step == 30:
                second = asyncio.create_task(steps_until(40, late))
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        await asyncio.sleep(5 * settings.poll_seconds)
        return early, late, len(hub_for(engine).feeds)  # read inside the loop: its end would cancel a feed left running

    early, late, feeds = in_own_loop(run())
    assert early == list(range(1, 41)) and late == list(range(1, 41))
    assert feeds == 0, "the feed stopped polling with its last subscriber"


def test_an_idle_stream_sends_a_keep_alive_comment(settings, app, client, monkeypatch):
    """A queued job changes nothing for minutes; a comment line keeps proxies from closing the quiet connection."""
    from app.web import sse

    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.2)
    job_id = client.post("/api/jobs", json=JOB).json()["id"]

    async def until_ping() -> list[bytes]:
        chunks: list[bytes] = []
        async for chunk in job_event_stream(app.state.engine, job_id, 0, settings.poll_seconds):
            chunks.append(chunk)
            if chunk == sse.KEEPALIVE:
                return chunks
        return chunks

    chunks = in_own_loop(asyncio.wait_for(until_ping(), 10))
    assert chunks[-1] == b": ping\n\n"
    assert any(b"event: status" in chunk for chunk in chunks[:-1]), "the job's state came first"
