"""Benchmark: the calculator's htmx round trip on loopback against a real `lorapedia serve`.

Run: .venv/bin/python bench/bench_htmx_roundtrip.py [--requests 300]
Starts a server on a free 127.0.0.1 port (no worker), then times GET /calculator with HX-Request
(the results block htmx swaps) and POST /api/calc, and prints p50/p99 per request.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench_htmx_roundtrip")
QUERIES = {
    "smollm2 default": "/calculator?model=smollm2-135m-instruct&r=16",
    "llama-8b all-linear nf4": "/calculator?model=llama-3.1-8b&r=16&lora_alpha=32&target_modules=all-linear&base_dtype=nf4",
    "llama-70b all-linear": "/calculator?model=llama-3.1-70b&r=64&target_modules=all-linear&use_dora=true",
}


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, var_dir: str) -> subprocess.Popen:
    """`lorapedia serve` without a worker; returns once /healthz answers."""
    env = {**os.environ, "LORAPEDIA_VAR_DIR": var_dir, "LORAPEDIA_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return wait_until_up(port, process)


def wait_until_up(port: int, process):
    """`process` once /healthz answers on `port` (killed if it does not within a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(client: httpx.Client, send, requests: int) -> list[float]:
    """Seconds per request, after 20 warm-up requests."""
    for _ in range(20):
        send(client)
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        response = send(client)
        samples.append(time.perf_counter() - start)
        response.raise_for_status()
    return samples


def main() -> None:
    """Start the server, time the requests, print p50/p99, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the table
    logger.info("load average before: %.1f %.1f %.1f on %d CPUs (other processes inflate p99)", *os.getloadavg(), os.cpu_count())
    port = free_port()
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_server(port, var_dir)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"HX-Request": "true"}) as client:
                logger.info("%-32s %10s %10s %10s", "request", "p50", "p99", "bytes")
                for name, path in QUERIES.items():
                    samples = measure(client, lambda c, p=path: c.get(p), args.requests)
                    size = len(client.get(path).content)
                    logger.info("%-32s %8.2f ms %8.2f ms %10d", "htmx " + name, percentile(samples, 0.5) * 1e3,
                                percentile(samples, 0.99) * 1e3, size)
                body = {"model": "llama-3.1-70b", "lora": {"r": 64, "target_modules": "all-linear"}}
                samples = measure(client, lambda c: c.post("/api/calc", json=body), args.requests)
                logger.info("%-32s %8.2f ms %8.2f ms", "POST /api/calc llama-70b", percentile(samples, 0.5) * 1e3,
                            percentile(samples, 0.99) * 1e3)
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
