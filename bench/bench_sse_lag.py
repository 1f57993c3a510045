"""Benchmark: lag from a metric row committed to the database to its point on the job page's chart.

A real `lorapedia serve --no-worker` runs on loopback; this process plays the worker, appending one
metric row every --interval seconds through the worker's own queue.append_metric. Two readers:

- browser: Debian's Chromium (through Playwright) opens /jobs/{id}; htmx's SSE extension follows the
  page's stream and the page's own script adds each point to the uPlot chart. A listener registered
  after the chart's records the time once the point is drawn.
- client: a Python SSE client follows GET /api/jobs/{id}/events (the API's stream, no browser).

Lag = that time - the row's recorded_at (one host, one clock). The stream polls the database every
poll_seconds, so the lag is about half of it on average. Target: <= 300 ms to the browser.

    python bench/bench_sse_lag.py [--rows 60] [--interval 0.05] [--polls 0.1 0.05] [--readers browser client]
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
from app.jobs.tables import JobStatus  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.jobs.sse_client import parse_events  # noqa: E402

logger = logging.getLogger("bench.sse_lag")
TARGET_MS = 300.0
JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 500}}


# Runs in the page before its own scripts: once htmx opens the stream, listen for metric events after the
# chart's listener (jobs.js registers on <body>, this on document, and the open event bubbles body first).
BROWSER_PROBE = """
window.benchLags = [];
window.benchOpen = false;
document.addEventListener("htmx:sseOpen", function (event) {
  window.benchOpen = true;
  event.detail.source.addEventListener("metric", function (message) {
    var drawn = Date.now();
    var stamp = JSON.parse(message.data).recorded_at;
    if (!/(Z|[+-]\\d\\d:\\d\\d)$/.test(stamp)) stamp += "Z";
    window.benchLags.push(drawn - Date.parse(stamp.replace(/(\\.\\d{3})\\d+/, "$1")));
  });
});
"""


def write_rows(engine, job_id: int, rows: int, interval: float) -> None:
    """Play the worker: `rows` metric rows `interval` apart, then finish the job."""
    for step in range(1, rows + 1):
        queue.append_metric(engine, job_id, {"step": step, "train_loss": 1.0, "learning_rate": 1e-4})
        time.sleep(interval)
    queue.finish_job(engine, job_id, "bench-writer", JobStatus.succeeded, {})


def measure_browser(poll_seconds: float, rows: int, interval: float) -> list[float]:
    """Lags in milliseconds from each row's commit to its point on the job page's chart in Chromium."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory(prefix="lorapedia-bench-") as scratch, sync_playwright() as playwright:
        var_dir = Path(scratch) / "var"
        server = start_server(var_dir, env={"LORAPEDIA_POLL_SECONDS": str(poll_seconds)})
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        engine = make_engine(Settings(var_dir=var_dir))
        try:
            job_id = httpx.post(f"{server.url}/api/jobs", json=JOB).json()["id"]
            queue.claim_next_job(engine, "bench-writer", lease_seconds=600)
            page = browser.new_page()
            page.add_init_script(BROWSER_PROBE)
            page.goto(f"{server.url}/jobs/{job_id}")
            page.wait_for_function("window.benchOpen === true", timeout=10_000)
            time.sleep(poll_seconds * 2)
            write_rows(engine, job_id, rows, interval)
            page.wait_for_function(f"window.benchLags.length >= {rows}", timeout=30_000)
            return page.evaluate("window.benchLags")
        finally:
            browser.close()
            engine.dispose()
            server.stop()


def measure_client(poll_seconds: float, rows: int, interval: float) -> list[float]:
    """Lags in milliseconds from each row's commit to its event reaching a Python SSE client of the API."""
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
        write_rows(engine, job_id, rows, interval)
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
    parser.add_argument("--polls", type=float, nargs="+", default=[Settings().poll_seconds, 0.05])
    parser.add_argument("--readers", nargs="+", choices=sorted(READERS), default=["browser", "client"])
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    print(f"metric row -> reader lag, {args.rows} rows {args.interval * 1000:.0f} ms apart, target {TARGET_MS:.0f} ms")
    print(f"{'reader':>8} {'poll_seconds':>12} {'rows seen':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p50/target':>10} {'p95/target':>10}")
    for poll in args.polls:
        for reader in args.readers:
            lags = READERS[reader](poll, args.rows, args.interval)
            p50, p95 = statistics.median(lags), percentile(lags, 0.95)
            print(f"{reader:>8} {poll:>12.3f} {len(lags):>9} {p50:>8.1f} {p95:>8.1f} {max(lags):>8.1f} "
                  f"{p50 / TARGET_MS:>9.2f}x {p95 / TARGET_MS:>9.2f}x")


READERS = {"browser": measure_browser, "client": measure_client}


if __name__ == "__main__":
    main()
