"""Benchmark: N concurrent page readers and M SSE subscribers against a real `lorapedia serve` on loopback.

Run: .venv/bin/python bench/bench_load.py [--readers 200] [--subscribers 100] [--seconds 60] [--worker]
Starts a server on a free 127.0.0.1 port, queues one tiny-llama job (trained, with --worker, by the embedded
worker). Load model: each of N readers fetches a page, then thinks 1-2 s (uniform) before the next, as a person
reading does; M clients follow the job's event stream; one prober times /healthz every 50 ms. All of it runs in
one asyncio process (aiohttp: httpx spent 68% of a core generating 38 pages a second, so the generator, not the server,
set the pace), whose own CPU use is printed so a saturated load generator shows. First the
subscribers alone for a few seconds (server CPU per subscriber, minus an idle baseline), then everything for
the given time. Prints errors by kind (with an example message), page and healthz p50/p99 (target p99 under
300 ms), and the server's CPU time per SSE subscriber.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_htmx_roundtrip import free_port, percentile, wait_until_up  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_load")
PAGES = ["/", "/params/r", "/params/lora_alpha", "/calculator?model=llama-3.1-8b&r=16&target_modules=all-linear",
         "/jobs", "/api/jobs", "/search?q=rank", "/explain"]
P99_TARGET_SECONDS = 0.3
THINK_SECONDS = (1.0, 2.0)  # a reader's pause between pages, uniform
SUBSCRIBER_PHASE_SECONDS = 10.0
JOB_STEPS = 100_000  # far more than tiny-llama trains in a run of this script


def start_server(port: int, var_dir: str, worker: bool) -> psutil.Popen:
    """`lorapedia serve`; returns once /healthz answers."""
    # The job must outlast the run: a finished job's subscribers would each replay its whole history again.
    env = {**os.environ, "LORAPEDIA_VAR_DIR": var_dir, "LORAPEDIA_LOG_LEVEL": "warning", "LORAPEDIA_MAX_STEPS": str(JOB_STEPS),
           "LORAPEDIA_JOB_TIME_LIMIT_SECONDS": "86400", "LORAPEDIA_MAX_GPU_SECONDS_PER_DAY": "86400"}
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = psutil.Popen(command + ([] if worker else ["--no-worker"]), cwd=ROOT, env=env,
                           stdout=open(Path(var_dir) / "server.log", "wb"), stderr=subprocess.STDOUT)
    return wait_until_up(port, process)


class Errors(Counter):
    """Errors by kind, keeping the first message of each kind (to diagnose, not just count)."""

    def __init__(self) -> None:
        super().__init__()
        self.examples: dict[str, str] = {}

    def add(self, kind: str, error: BaseException | None = None) -> None:
        self[kind] += 1
        if error is not None:
            self.examples.setdefault(kind, f"{type(error).__name__}: {error!r}"[:300])


async def reader(session: aiohttp.ClientSession, index: int, stop: float, latencies: list[float], errors: Errors) -> None:
    """Fetch a page, think 1-2 s, and again, until `stop`; readers start spread over the first think time."""
    turn = index
    think = random.Random(index)
    await asyncio.sleep(think.uniform(0, THINK_SECONDS[1]))
    while time.monotonic() < stop:
        path = PAGES[turn % len(PAGES)]
        turn += 1
        started = time.perf_counter()
        try:
            async with session.get(path) as response:
                await response.read()
                if response.status != 200:
                    errors.add(f"HTTP {response.status} {path.split('?')[0]}")
                else:
                    latencies.append(time.perf_counter() - started)
        except (aiohttp.ClientError, TimeoutError) as error:
            errors.add(type(error).__name__, error)
        await asyncio.sleep(think.uniform(*THINK_SECONDS))


async def subscriber(session: aiohttp.ClientSession, job_id: int, stop: float, events: Counter, errors: Errors) -> None:
    """Follow the job's event stream until `stop` (reconnecting if the stream ends)."""
    while time.monotonic() < stop:
        try:
            async with session.get(f"/api/jobs/{job_id}/events", timeout=aiohttp.ClientTimeout(total=None, connect=10)) as response:
                if response.status != 200:
                    errors.add(f"SSE HTTP {response.status}")
                    await asyncio.sleep(1)
                    continue
                async for line in response.content:
                    if line.startswith(b"event:"):
                        kind = line[6:].strip().decode()
                        events[kind] += 1
                        if kind == "done":  # a page stops following a job that has ended
                            return
                    if time.monotonic() >= stop:
                        return
        except (aiohttp.ClientError, TimeoutError) as error:
            errors.add(f"SSE {type(error).__name__}", error)


async def prober(session: aiohttp.ClientSession, stop: float, latencies: list[float], errors: Errors) -> None:
    """Time /healthz every 50 ms."""
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            async with session.get("/healthz") as response:
                await response.read()
                response.raise_for_status()
            latencies.append(time.perf_counter() - started)
        except (aiohttp.ClientError, TimeoutError) as error:
            errors.add(f"healthz {type(error).__name__}", error)
        await asyncio.sleep(0.05)


async def run(base_url: str, job_id: int, readers: int, subscribers: int, seconds: float, server: psutil.Process) -> dict:
    """The subscribers-only phase, then the full load; latencies, errors, events and CPU seconds of each phase."""
    result: dict = {"pages": [], "healthz": [], "errors": Errors(), "events": Counter()}
    # readers and subscribers on pools of their own, so a stream never waits for a connection a reader holds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(limit=readers + 10), timeout=timeout) as pages, \
            aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(limit=subscribers + 10), timeout=timeout) as streams, \
            aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=10)) as health:
        idle_before = server_cpu_seconds(server)
        await asyncio.sleep(3)
        result["idle_cpu_per_second"] = (server_cpu_seconds(server) - idle_before) / 3
        stop = time.monotonic() + SUBSCRIBER_PHASE_SECONDS + seconds
        streaming = [asyncio.create_task(subscriber(streams, job_id, stop, result["events"], result["errors"])) for _ in range(subscribers)]
        await asyncio.sleep(2)  # every stream connected and caught up
        cpu_before = server_cpu_seconds(server)
        await asyncio.sleep(SUBSCRIBER_PHASE_SECONDS - 2)
        result["subscriber_cpu_per_second"] = (server_cpu_seconds(server) - cpu_before) / (SUBSCRIBER_PHASE_SECONDS - 2)
        cpu_before, own_before, full_stop = server_cpu_seconds(server), time.process_time(), time.monotonic() + seconds
        await asyncio.gather(
            *(reader(pages, index, full_stop, result["pages"], result["errors"]) for index in range(readers)),
            prober(health, full_stop, result["healthz"], result["errors"]),
        )
        result["full_cpu"] = server_cpu_seconds(server) - cpu_before
        result["generator_cpu"] = time.process_time() - own_before
        await asyncio.gather(*streaming)
    return result


def server_cpu_seconds(process: psutil.Process) -> float:
    """CPU time of the web process (the embedded worker, a child, is not counted)."""
    times = process.cpu_times()
    return times.user + times.system


def wait_for_training(base_url: str, job_id: int) -> None:
    """Return once the job has written its first metric row, so the subscribers' phase sees events flowing."""
    deadline = time.monotonic() + 180
    while not httpx.get(f"{base_url}/api/jobs/{job_id}").json().get("last_step"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} wrote no metric in 180 s")
        time.sleep(0.5)


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
            job = {"model": "tiny-llama", "dataset": "addition", "training": {"max_steps": JOB_STEPS}}
            job_id = httpx.post(f"{base_url}/api/jobs", json=job).raise_for_status().json()["id"]
            if args.worker:
                wait_for_training(base_url, job_id)
            result = asyncio.run(run(base_url, job_id, args.readers, args.subscribers, args.seconds, server))
        finally:
            server.terminate()
            server.wait(timeout=60)
    errors: Errors = result["errors"]
    logger.info("%d readers (each: a page, then 1-2 s of thinking), %d SSE subscribers, %.0f s, job %s", args.readers,
                args.subscribers, args.seconds, "running (worker)" if args.worker else "queued (no worker)")
    logger.info("errors: %d %s", sum(errors.values()), dict(errors) or "")
    for kind, example in errors.examples.items():
        logger.info("  first %s: %s", kind, example)
    for name in ("pages", "healthz"):
        samples = result[name]
        if samples:
            p99 = percentile(samples, 0.99)
            logger.info("%-8s %6d answers  p50 %7.1f ms  p99 %7.1f ms  (p99 %.2fx of the %d ms target)", name, len(samples),
                        percentile(samples, 0.5) * 1e3, p99 * 1e3, p99 / P99_TARGET_SECONDS, P99_TARGET_SECONDS * 1e3)
    logger.info("pages per second: %.0f; SSE events received: %s", len(result["pages"]) / args.seconds, dict(result["events"]))
    per_subscriber = (result["subscriber_cpu_per_second"] - result["idle_cpu_per_second"]) / max(args.subscribers, 1)
    logger.info("web process CPU: idle %.1f%% of a core; %d subscribers alone %.1f%%: %.2f ms CPU per subscriber-second (measured)",
                100 * result["idle_cpu_per_second"], args.subscribers, 100 * result["subscriber_cpu_per_second"], 1e3 * per_subscriber)
    logger.info("web process CPU under the full load: %.0f%% of one core; the load generator itself: %.0f%% of one core",
                100 * result["full_cpu"] / args.seconds, 100 * result["generator_cpu"] / args.seconds)
    logger.info("load average after: %.1f %.1f %.1f", *os.getloadavg())


if __name__ == "__main__":
    main()
