"""Faults with the real trainer: a worker killed mid-job, a job past its wall-time limit, a disk too full for the adapter."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.jobs.test_end_to_end import FAST_ENV, LONG_JOB, submit, wait_for, wait_for_embedded_workers

pytestmark = pytest.mark.slow
ENDED = ("succeeded", "failed", "cancelled", "interrupted")


def test_the_supervisor_marks_a_killed_workers_job_interrupted_at_once_and_the_owner_retries_it(server_factory):
    # a lease of a minute: only the supervisor's own sight of the exit can explain a prompt 'interrupted'
    server = server_factory(worker=True, env={**FAST_ENV, "LORAPEDIA_LEASE_SECONDS": "60"})
    first = wait_for_embedded_workers(server)
    job_id = submit(server.url, LONG_JOB)
    wait_for(server.url, job_id, lambda job: (job["last_step"] or 0) >= 1, timeout=90)
    os.kill(next(iter(first)), signal.SIGKILL)
    killed_at = time.monotonic()
    job = wait_for(server.url, job_id, lambda job: job["status"] != "running", timeout=10)
    assert time.monotonic() - killed_at < 5
    assert job["status"] == "interrupted" and "worker process exited" in job["error"]

    retried = httpx.post(f"{server.url}/api/jobs/{job_id}/retry", timeout=10)
    assert retried.status_code == 201, retried.text
    again = retried.json()
    assert again["retry_of"] == job_id and again["config"] == job["config"]
    # the restarted worker takes it
    assert wait_for(server.url, again["id"], lambda job: job["status"] != "queued", timeout=60)["status"] == "running"
    httpx.post(f"{server.url}/api/jobs/{again['id']}/cancel", timeout=10)


def test_a_job_past_its_wall_time_limit_is_stopped_by_the_worker(server_factory, worker_factory):
    server = server_factory(env=FAST_ENV)
    worker_factory(server.var_dir, {**FAST_ENV, "LORAPEDIA_JOB_TIME_LIMIT_SECONDS": "4"})
    job_id = submit(server.url, LONG_JOB)
    started = time.monotonic()
    job = wait_for(server.url, job_id, lambda job: job["status"] in ENDED, timeout=120)
    assert job["status"] == "failed" and "wall-time limit of 4 s (job_time_limit_seconds)" in job["error"]
    assert 0 < job["last_step"] < 500 and time.monotonic() - started < 60
    assert httpx.get(f"{server.url}/api/jobs/{job_id}/adapter").status_code == 404


def test_a_disk_too_full_for_the_adapter_fails_the_job_before_it_trains_and_leaves_no_files(server_factory, worker_factory):
    server = server_factory(env=FAST_ENV)
    # asking to keep an exabyte free makes the real free space of this disk too little
    worker_factory(server.var_dir, {**FAST_ENV, "LORAPEDIA_MIN_FREE_DISK_BYTES": str(10**18)})
    job_id = submit(server.url, {**LONG_JOB, "training": {**LONG_JOB["training"], "max_steps": 5}})
    job = wait_for(server.url, job_id, lambda job: job["status"] in ENDED, timeout=120)
    assert job["status"] == "failed" and "not enough disk space to save the adapter" in job["error"]
    assert "min_free_disk_bytes" in job["error"] and job["last_step"] is None  # stopped before the first step
    assert not (server.var_dir / "adapters" / f"job-{job_id}").exists()
