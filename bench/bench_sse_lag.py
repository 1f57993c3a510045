"""Benchmark: lag from a metric row committed to the database to its SSE event arriving at a client.

A real `lorapedia serve --no-worker` runs on loopback; this process plays the worker, appending one
metric row every --interval seconds through the worker's own queue.append_metric, while an SSE client
(an EventSource equivalent) follows GET /api/jobs/{id}/events. Lag = arrival time - the row's
recorded_at (one host, one clock). The stream polls the database every poll_seconds, so the lag is
about half of it on average; runs side by side for several poll intervals. Target: <= 300 ms.

    python bench/bench_sse_lag.py [--rows 60] [--interval 0.05] [--polls 0.5 0.1 0.05]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.jobs import queue  # noqa: E402
from app.jobs.db import make_engine  # noqa: E402
from app.jobs.models import JobStatus  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.jobs.sse_client import parse_events  # noqa: E402

logger = logging.getLogger("bench.sse_lag")
TARGET_MS = 300.0
JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 500}}


def measure(poll_seconds: float, rows: int, interval: float) -> list[float]:
    """Lags in milliseconds of `rows` metric rows written `interval` apart, with the stream polling every poll_seconds."""
    scratch = tempfile.TemporaryDirectory(prefix="lorapedia-bench-")
    var_dir = Path(scratch.name) / "var"
    server = start_server(var_dir, env={"LORAPEDIA_POLL_SECONDS": str(poll_seconds)})
    try:
        engine = make_engine(Settings(var_dir=var_dir))
        job_id = httpx.post(f"{server.url}/api/jobs", json=JOB).json()["id"]
        queue.claim_next_job(engine, "bench-writer", lease_seconds=600)
        lags: list[float] = []
        connected = threading.Event()

        def follow() -> None:
            with httpx.stream("GET", f"{server.url}/api/jobs/{job_id}/events", timeout=60) as response:
                connected.set()
                for event in parse_events(response.iter_lines()):
                    if event.event == "metric":
                        arrived = datetime.now(UTC)
                        recorded = datetime.fromisoformat(event.json()["recorded_at"])
                        lags.append((arrived - recorded).total_seconds() * 1000)
                    elif event.event == "done":
                        return

        reader = threading.Thread(target=follow)
        reader.start()
        connected.wait(10)
        time.sleep(poll_seconds * 2)
        for step in range(1, rows + 1):
            queue.append_metric(engine, job_id, {"step": step, "train_loss": 1.0, "learning_rate": 1e-4})
            time.sleep(interval)
        queue.finish_job(engine, job_id, "bench-writer", JobStatus.succeeded, {})
        reader.join(timeout=30)
        engine.dispose()
        return lags
    finally:
        server.stop()
        scratch.cleanup()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the values fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    """Measure and print p50, p95 and max lag per poll interval, with their ratio to the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between metric rows (a fast worker)")
    parser.add_argument("--polls", type=float, nargs="+", default=[Settings().poll_seconds, 0.1, 0.05])
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    print(f"metric row -> SSE client lag, {args.rows} rows {args.interval * 1000:.0f} ms apart, target {TARGET_MS:.0f} ms")
    print(f"{'poll_seconds':>12} {'rows seen':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p50/target':>10} {'p95/target':>10}")
    for poll in args.polls:
        lags = measure(poll, args.rows, args.interval)
        p50, p95 = statistics.median(lags), percentile(lags, 0.95)
        print(f"{poll:>12.3f} {len(lags):>9} {p50:>8.1f} {p95:>8.1f} {max(lags):>8.1f} {p50 / TARGET_MS:>9.2f}x {p95 / TARGET_MS:>9.2f}x")


if __name__ == "__main__":
    main()
