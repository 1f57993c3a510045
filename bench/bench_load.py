"""Benchmark: N concurrent page readers and M SSE subscribers against a real `lorapedia serve` on loopback.

Run: .venv/bin/python bench/bench_load.py [--readers 200] [--subscribers 100] [--seconds 60] [--worker]
Starts a server on a free 127.0.0.1 port, queues one tiny-llama job (trained, with --worker, by the embedded
worker), then for the given time N readers fetch pages in a loop, M clients follow the job's event stream and
one prober times /healthz every 50 ms. Prints errors by kind, page and healthz p50/p99 (target p99 under
300 ms), and the server's CPU time per SSE subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_htmx_roundtrip import free_port, percentile, wait_until_up  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_load")
PAGES = ["/", "/params/r", "/params/lora_alpha", "/calculator?model=llama-3.1-8b&r=16&target_modules=all-linear",
         "/jobs", "/api/jobs", "/search?q=rank", "/explain"]
P99_TARGET_SECONDS = 0.3


def start_server(port: int, var_dir: str, worker: bool) -> psutil.Popen:
    """`lorapedia serve`; returns once /healthz answers."""
    env = {**os.environ, "LORAPEDIA_VAR_DIR": var_dir, "LORAPEDIA_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = psutil.Popen(command + ([] if worker else ["--no-worker"]), cwd=ROOT, env=env,
                           stdout=open(Path(var_dir) / "server.log", "wb"), stderr=subprocess.STDOUT)
    return wait_until_up(port, process)


async def reader(client: httpx.AsyncClient, index: int, stop: float, latencies: list[float], errors: Counter) -> None:
    """Fetch pages in turn until `stop`."""
    turn = index
    while time.monotonic() < stop:
        path = PAGES[turn % len(PAGES)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await client.get(path)
            if response.status_code != 200:
                errors[f"HTTP {response.status_code} {path.split('?')[0]}"] += 1
            else:
                latencies.append(time.perf_counter() - started)
        except httpx.HTTPError as error:
            errors[type(error).__name__] += 1


async def subscriber(client: httpx.AsyncClient, job_id: int, stop: float, events: Counter, errors: Counter) -> None:
    """Follow the job's event stream until `stop` (reconnecting if the stream ends)."""
    while time.monotonic() < stop:
        try:
            async with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=httpx.Timeout(10, read=None)) as response:
                if response.status_code != 200:
                    errors[f"SSE HTTP {response.status_code}"] += 1
                    await asyncio.sleep(1)
                    continue
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        events[line.split(":", 1)[1].strip()] += 1
                    if time.monotonic() >= stop:
                        return
        except httpx.HTTPError as error:
            errors[f"SSE {type(error).__name__}"] += 1


async def prober(client: httpx.AsyncClient, stop: float, latencies: list[float], errors: Counter) -> None:
    """Time /healthz every 50 ms."""
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            (await client.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - started)
        except httpx.HTTPError as error:
            errors[f"healthz {type(error).__name__}"] += 1
        await asyncio.sleep(0.05)


async def run(base_url: str, job_id: int, readers: int, subscribers: int, seconds: float) -> tuple[list, list, Counter, Counter]:
    limits = httpx.Limits(max_connections=readers + subscribers + 10, max_keepalive_connections=readers + subscribers + 10)
    page_latencies: list[float] = []
    healthz_latencies: list[float] = []
    errors: Counter = Counter()
    events: Counter = Counter()
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client, \
            httpx.AsyncClient(base_url=base_url, timeout=10) as health:
        stop = time.monotonic() + seconds
        await asyncio.gather(
            *(reader(client, index, stop, page_latencies, errors) for index in range(readers)),
            *(subscriber(client, job_id, stop, events, errors) for _ in range(subscribers)),
            prober(health, stop, healthz_latencies, errors),
        )
    return page_latencies, healthz_latencies, errors, events


def server_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of the web process (the embedded worker, a child, is not counted)."""
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    """Start the server, load it, print the figures, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--worker", action="store_true", help="start the embedded worker so the job runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logger.info("load average before: %.1f %.1f %.1f on %d CPUs (other processes inflate p99)", *os.getloadavg(), os.cpu_count())
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_server(port, var_dir, args.worker)
        try:
            job = {"model": "tiny-llama", "dataset": "addition", "training": {"max_steps": 500}}
            job_id = httpx.post(f"{base_url}/api/jobs", json=job).raise_for_status().json()["id"]
            cpu_before = server_cpu_seconds(server)
            pages, healthz, errors, events = asyncio.run(run(base_url, job_id, args.readers, args.subscribers, args.seconds))
            cpu = server_cpu_seconds(server) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=60)
    logger.info("%d readers, %d SSE subscribers, %.0f s, job %s", args.readers, args.subscribers, args.seconds,
                "running (worker)" if args.worker else "queued (no worker)")
    logger.info("errors: %d %s", sum(errors.values()), dict(errors) or "")
    for name, samples in (("page", pages), ("healthz", healthz)):
        if samples:
            p99 = percentile(samples, 0.99)
            logger.info("%-8s %6d answers  p50 %7.1f ms  p99 %7.1f ms  (p99 %.2fx of the %d ms target)", name, len(samples),
                        percentile(samples, 0.5) * 1e3, p99 * 1e3, p99 / P99_TARGET_SECONDS, P99_TARGET_SECONDS * 1e3)
    logger.info("pages per second: %.0f; SSE events received: %s", len(pages) / args.seconds, dict(events))
    logger.info("web process CPU: %.1f s over %.0f s (%.0f%% of one core); per SSE subscriber: %.1f ms CPU per second (upper bound: readers share it)",
                cpu, args.seconds, 100 * cpu / args.seconds, 1e3 * cpu / args.seconds / max(args.subscribers, 1))


if __name__ == "__main__":
    main()
