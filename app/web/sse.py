"""Server-Sent Events for jobs: one event per metric row (id = step), status changes, and the end.

The database is the only channel between web and worker processes. Every subscriber of one job shares
one poll of it (a JobFeed): 200 open pages of a running job cost one query every poll interval, not 200.
On PostgreSQL a notice (app.jobs.notify) makes the feed poll at once; the interval is then only the fallback.
Metric events carry `id: <step>`, so a reconnecting EventSource sends Last-Event-ID and resumes with the
next step: no gap, no duplicate. Each event is encoded once per feed, not once per subscriber, and a subscriber
gets everything new since its last wake-up in one write (100 streams of a job cost 4.2 ms of CPU per subscriber-second
when each built and sent its own events one by one). On shutdown every stream ends at once (`close_streams`), so the server
does not wait for running jobs to finish before it exits.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI
from fastapi.sse import format_sse_event
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from app.jobs import notify, service
from app.jobs.tables import FINISHED_STATUSES, JobPublic, MetricPublic

logger = logging.getLogger(__name__)

METRIC_BATCH = 500
RETRY_MILLISECONDS = 1000
KEEPALIVE_SECONDS = 15.0  # a comment line this often keeps proxies from closing an idle stream
KEEPALIVE = format_sse_event(comment="ping")

# Page streams add HTML fragments for htmx to swap: event name -> HTML, from the job, its last metric and every
# metric row up to it (the curve flags read the whole curve).
FragmentRenderer = Callable[[JobPublic, MetricPublic | None, Sequence[MetricPublic]], dict[str, str]]


def parse_resume_step(last_event_id: str | None, after: int | None) -> int:
    """The last step the client has: Last-Event-ID (set by a reconnecting browser) wins over ?after=.

    A Last-Event-ID that is not a step this server could have sent (not a whole number from 0 to
    2**63-1) is ignored, as the SSE spec lets a server do, so the stream starts from ?after= instead.
    """
    text = (last_event_id or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= len(str(service.MAX_ID)) and int(text) <= service.MAX_ID:
        return int(text)
    return after or 0


def _snapshot(engine: Engine, job_id: int, after: int) -> tuple[JobPublic, list[MetricPublic]]:
    # The job is read before its metrics: a worker writes every metric before the final status,
    # so when this read sees a finished job the metric read that follows sees all of its rows.
    with Session(engine) as session:
        job = service.get_job(session, job_id)
        public = service.job_public(session, job)
        return public, service.metrics_after(session, job_id, after, limit=METRIC_BATCH)


def _metric_at(engine: Engine, job_id: int, step: int) -> MetricPublic | None:
    with Session(engine) as session:
        return service.metric_at(session, job_id, step)


class Curve(list[MetricPublic]):
    """A job's metric rows through one step, shared by every subscriber of its feed at that step.

    Rows through a step never change, so what a page derives from them (the curve's flags) is kept in `memo`
    and computed once per step, not once per open page.
    """

    def __init__(self, rows: list[MetricPublic]):
        super().__init__(rows)
        self.memo: dict[str, object] = {}


class JobFeed:
    """One job's shared poll: its latest state and every metric row read so far, for all of its subscribers."""

    def __init__(self, hub: StreamHub, job_id: int, poll_seconds: float):
        self.hub, self.job_id, self.poll_seconds = hub, job_id, poll_seconds
        self.job: JobPublic | None = None
        self.metrics: list[MetricPublic] = []
        self.steps: list[int] = []
        self.encoded: list[bytes] = []  # each row's `metric` event, as every subscriber sends it
        self._status: tuple[int, bytes] = (-1, b"")  # (version, the `status` event of that version's job)
        self._fragments: tuple[tuple, bytes] = ((), b"")  # ((version, step), the live blocks everyone may see)
        self._curve = Curve([])
        self.finished = False
        self.error: BaseException | None = None
        self.subscribers = 0
        self.version = 0
        self._changed = asyncio.Event()
        self._poked = asyncio.Event()  # a PostgreSQL notice or the hub closing: poll now
        self.task: asyncio.Task | None = None

    def poke(self) -> None:
        """Poll now instead of at the end of the poll interval."""
        self._poked.set()

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._poked.wait(), self.poll_seconds)
        except TimeoutError:
            pass
        self._poked.clear()

    def notify(self) -> None:
        """Wake every subscriber: something changed (or the hub is closing)."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_beyond(self, version: int, timeout: float | None = None) -> bool:
        """True once the feed has moved past `version`, has ended, or the hub is closing; False after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while self.version <= version and not self.hub.closed:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def index_after(self, step: int) -> int:
        """Where the rows with a step above `step` start in `metrics` and `encoded`."""
        return bisect.bisect_right(self.steps, step)

    def status_event(self) -> bytes:
        """The `status` event of the job as last read, encoded once per version."""
        if self._status[0] != self.version:
            self._status = (self.version, format_sse_event(event="status", data_str=json.dumps(_status_payload(self.job))))
        return self._status[1]

    def shared_fragments(self, step: int, render: Callable[[], dict[str, str]]) -> bytes:
        """The live blocks at `step` for pages without controls (the same HTML for all of them), rendered once."""
        key = (self.version, step)
        if self._fragments[0] != key:
            self._fragments = (key, encode_blocks(render()))
        return self._fragments[1]

    def metrics_through(self, step: int) -> Curve:
        """The rows read so far with a step up to `step`: one Curve for every subscriber that asks for the same rows."""
        count = bisect.bisect_right(self.steps, step)
        if len(self._curve) != count:
            self._curve = Curve(self.metrics[:count])
        return self._curve

    async def run(self) -> None:
        """Poll until the job has ended and every row is read, or nobody listens any more."""
        try:
            while self.subscribers > 0 and not self.hub.closed:
                after = self.steps[-1] if self.steps else 0
                job, rows = await run_in_threadpool(_snapshot, self.hub.engine, self.job_id, after)
                seen = self.job and (self.job.status, self.job.total_steps, self.job.device, self.job.cancel_requested)
                self.job = job
                self.metrics.extend(rows)
                self.steps.extend(row.step for row in rows)
                self.encoded.extend(format_sse_event(event="metric", id=str(row.step), data_str=row.model_dump_json()) for row in rows)
                caught_up = len(rows) < METRIC_BATCH
                self.finished = job.status in FINISHED_STATUSES and caught_up
                if rows or self.finished or seen != (job.status, job.total_steps, job.device, job.cancel_requested):
                    self.notify()
                if self.finished:
                    return
                if caught_up:
                    await self._pause()
        except Exception as error:  # the subscribers end their streams; the next page load starts a new feed
            logger.exception("job %d: the shared event poll failed", self.job_id)
            self.error = error
            self.notify()
        finally:
            self.hub.drop(self)


class StreamHub:
    """The open job feeds of one database, and the switch that ends every stream at shutdown."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.feeds: dict[int, JobFeed] = {}
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, job_id: int, poll_seconds: float) -> JobFeed:
        """The job's feed, started if none runs; the caller must `unsubscribe` it."""
        self._loop = asyncio.get_running_loop()
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = JobFeed(self, job_id, poll_seconds)
            feed.subscribers += 1
            feed.task = asyncio.create_task(feed.run(), name=f"job-{job_id}-feed")
        else:
            feed.subscribers += 1
        return feed

    def unsubscribe(self, feed: JobFeed) -> None:
        """One listener fewer; the feed stops polling at its next turn when none is left."""
        feed.subscribers -= 1

    def drop(self, feed: JobFeed) -> None:
        """Forget a feed that has stopped."""
        if self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]

    def poke_from_thread(self, kind: str, job_id: int) -> None:
        """A job's row or metric changed (a PostgreSQL notice, on the listener's thread): its feed polls now."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._poke, job_id)

    def _poke(self, job_id: int) -> None:
        feed = self.feeds.get(job_id)
        if feed is not None:
            feed.poke()

    def close(self) -> None:
        """End every stream now and refuse new ones; safe to call from a signal handler or another thread."""
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for feed in list(self.feeds.values()):
            feed.poke()
            feed.notify()


_HUBS: weakref.WeakKeyDictionary[Engine, StreamHub] = weakref.WeakKeyDictionary()


def hub_for(engine: Engine) -> StreamHub:
    """The stream hub of a database engine (one per app)."""
    hub = _HUBS.get(engine)
    if hub is None:
        hub = _HUBS[engine] = StreamHub(engine)
    return hub


def open_streams(app: FastAPI) -> None:
    """A fresh hub for the app's streams (at start-up; a restarted app must not inherit a closed one), woken by PostgreSQL notices."""
    hub = _HUBS[app.state.engine] = StreamHub(app.state.engine)
    app.state.job_listener = notify.listen(app.state.engine, hub.poke_from_thread)


def close_streams(app: FastAPI) -> None:
    """End the app's event streams at once (on shutdown)."""
    hub_for(app.state.engine).close()
    listener = getattr(app.state, "job_listener", None)
    if listener is not None:
        listener.stop()


# OpenAPI 3.2's description of one event of a text/event-stream, for the routes' `responses`
EVENT_STREAM_RESPONSES = {200: {"content": {"text/event-stream": {"itemSchema": {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"},
                   "retry": {"type": "integer", "minimum": 0}},
}}}}}


class EventStream(StreamingResponse):
    """A text/event-stream of events encoded here (not by FastAPI's per-event SSE path), which proxies pass on at once."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], status_code: int = 200):  # FastAPI's schema reads the default status
        super().__init__(events, status_code, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def job_event_stream(
    engine: Engine, job_id: int, after: int, poll_seconds: float, fragments: FragmentRenderer | None = None,
    shared_fragments: bool = False,
) -> AsyncIterator[bytes]:
    """Metric events after step `after`, then status and fragment events as they change, until the job ends.

    Each yield is everything new at one wake-up, encoded. `shared_fragments`: the fragments do not depend on who
    is watching, so one rendering serves every such subscriber of the job at that step.
    """
    yield format_sse_event(comment="job stream", retry=RETRY_MILLISECONDS)
    hub = hub_for(engine)
    if hub.closed:
        return
    # a resuming page still needs the step it has, to draw its progress bar, ETA and speed
    last_metric = await run_in_threadpool(_metric_at, engine, job_id, after) if fragments and after else None
    feed = hub.subscribe(job_id, poll_seconds)
    try:
        last_seen: tuple | None = None
        version = 0
        while True:
            if not await feed.wait_beyond(version, KEEPALIVE_SECONDS):
                yield KEEPALIVE
                continue
            if hub.closed:
                return
            if feed.error is not None:
                raise RuntimeError(f"job {job_id}: the event poll failed") from feed.error
            # one consistent snapshot: the feed keeps polling while this chunk is sent, so "finished" must be the
            # one that goes with these rows, or rows read after it would never be sent
            version, job, finished = feed.version, feed.job, feed.finished
            start, end = feed.index_after(after), len(feed.metrics)
            chunk = feed.encoded[start:end]
            if end > start:
                after, last_metric = feed.steps[end - 1], feed.metrics[end - 1]
            seen = (job.status, job.total_steps, job.device, job.cancel_requested, after)
            if seen != last_seen:
                last_seen = seen
                chunk.append(feed.status_event())
                if fragments and shared_fragments:
                    step, metric = after, last_metric
                    chunk.append(feed.shared_fragments(after, lambda: fragments(job, metric, feed.metrics_through(step))))
                elif fragments:
                    chunk.append(encode_blocks(fragments(job, last_metric, feed.metrics_through(after))))
            if finished:
                chunk.append(format_sse_event(event="done", data_str=json.dumps(_status_payload(job))))
            yield b"".join(chunk)
            if finished:
                return
    finally:
        hub.unsubscribe(feed)


def encode_blocks(blocks: dict[str, str]) -> bytes:
    """HTML blocks as SSE events, one per block, named after it."""
    return b"".join(format_sse_event(event=name, data_str=html) for name, html in blocks.items())


def _status_payload(job: JobPublic) -> dict:
    return {
        "id": job.id,
        "status": job.status.value,
        "last_step": job.last_step,
        "total_steps": job.total_steps,
        "device": job.device,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
    }
