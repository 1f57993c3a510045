"""End to end on tiny-llama with the real trainer: web server and worker processes sharing one SQLite database."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile

import httpx

from tests.jobs.sse_client import parse_events

FAST_ENV = {"LORAPEDIA_POLL_SECONDS": "0.05", "LORAPEDIA_HEARTBEAT_SECONDS": "0.3", "LORAPEDIA_LEASE_SECONDS": "3"}
LEARNING_JOB = {
    "model": "tiny-llama", "dataset": "addition", "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
    "training": {"max_steps": 30, "learning_rate": 0.01, "warmup_steps": 0, "per_device_train_batch_size": 8, "eval_steps": None},
}
LONG_JOB = {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 500}}


def submit(base_url: str, job: dict) -> int:
    response = httpx.post(f"{base_url}/api/jobs", json=job, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for(base_url: str, job_id: int, condition, timeout: float = 120) -> dict:
    """Poll GET /api/jobs/{id} until condition(job) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base_url}/api/jobs/{job_id}", timeout=10).json()
        if condition(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never met the condition: {job}")


def follow(base_url: str, job_id: int, headers: dict | None = None):
    """Every event of the job's stream, until the server ends it."""
    with httpx.stream("GET", f"{base_url}/api/jobs/{job_id}/events", headers=headers or {}, timeout=120) as response:
        return list(parse_events(response.iter_lines()))


def test_a_job_trains_streams_every_step_and_its_adapter_downloads(server_factory, worker_factory, tmp_path):
    server = server_factory(env=FAST_ENV)
    worker_factory(server.var_dir, FAST_ENV)
    job_id = submit(server.url, LEARNING_JOB)
    events = follow(server.url, job_id)
    metrics = [event.json() for event in events if event.event == "metric"]
    assert [metric["step"] for metric in metrics] == list(range(1, 31))
    assert [event.id for event in events if event.event == "metric"] == [str(step) for step in range(1, 31)]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert events[-1].event == "done" and events[-1].json()["status"] == "succeeded"
    job = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
    assert job["device"].startswith("cpu") and job["peak_memory_bytes"] > 0 and job["predicted_memory_bytes"] > 0
    assert job["trainable_params"] == job["predicted_trainable_params"] > 0
    assert job["final_eval_loss"] is not None and len(job["samples_after"]) == len(job["samples_before"]) > 0
    assert 0 <= job["final_exact_match"] <= 1  # addition is scored by exact match
    adapter = httpx.get(f"{server.url}/api/jobs/{job_id}/adapter")
    archive = zipfile.ZipFile(io.BytesIO(adapter.content))
    assert "adapter_config.json" in archive.namelist() and "adapter_model.safetensors" in archive.namelist()
    assert_weights_match_the_job(server.url, job, archive)
    # a browser that lost the stream after step 12 gets 13..30, no gap and no repeat
    resumed = follow(server.url, job_id, headers={"Last-Event-ID": "12"})
    assert [event.id for event in resumed if event.event == "metric"] == [str(step) for step in range(13, 31)]


def assert_weights_match_the_job(base_url: str, job: dict, archive: zipfile.ZipFile) -> None:
    """The saved adapter, read back from its safetensors header by /api/explain, is the job's: rank, modules, count, bytes."""
    weights_file = archive.read("adapter_model.safetensors")
    header = weights_file[8:8 + int.from_bytes(weights_file[:8], "little")].decode()
    config = json.loads(archive.read("adapter_config.json"))
    explained = httpx.post(f"{base_url}/api/explain", timeout=30, json={
        # the model by its catalogue id, whatever local path the worker loaded its weights from
        "adapter_config": {**config, "base_model_name_or_path": job["model"]},
        "adapter_weights_header": header, "adapter_weights_bytes": len(weights_file)}).json()
    weights = explained["weights"]
    assert weights["ranks"] == [LEARNING_JOB["lora"]["r"]]
    assert sum(row["count"] for row in weights["modules"]) == 14  # all-linear on tiny-llama: 2 layers x 7 projections
    assert weights["lora_params"] == job["trainable_params"]
    assert weights["predicted"]["matches"] is True and weights["file_bytes"] == len(weights_file)
    assert [finding["code"] for finding in weights["findings"]] == ["size_matches"]


def test_cancel_stops_a_running_job_within_a_step_and_keeps_its_metrics(server_factory, worker_factory):
    server = server_factory(env=FAST_ENV)
    worker_factory(server.var_dir, FAST_ENV)
    job_id = submit(server.url, LONG_JOB)
    wait_for(server.url, job_id, lambda job: (job["last_step"] or 0) >= 3)
    assert httpx.post(f"{server.url}/api/jobs/{job_id}/cancel").status_code == 202
    requested_at = httpx.get(f"{server.url}/api/jobs/{job_id}").json()["last_step"]
    job = wait_for(server.url, job_id, lambda job: job["status"] != "running", timeout=30)
    assert job["status"] == "cancelled"
    steps = [row["step"] for row in httpx.get(f"{server.url}/api/jobs/{job_id}/metrics").json()]
    assert steps == list(range(1, len(steps) + 1)) and steps[-1] <= requested_at + 1


def test_a_worker_killed_mid_job_leaves_it_interrupted_once_the_lease_runs_out(server_factory, worker_factory):
    server = server_factory(env=FAST_ENV)
    worker = worker_factory(server.var_dir, FAST_ENV)
    job_id = submit(server.url, LONG_JOB)
    wait_for(server.url, job_id, lambda job: (job["last_step"] or 0) >= 3)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = time.monotonic()
    job = wait_for(server.url, job_id, lambda job: job["status"] != "running", timeout=15)
    assert job["status"] == "interrupted" and "lease" in job["error"]
    # marked once the lease runs out, not at some later sweep (slack for a loaded CI machine)
    assert time.monotonic() - killed_at <= float(FAST_ENV["LORAPEDIA_LEASE_SECONDS"]) + 6
    assert len(httpx.get(f"{server.url}/api/jobs/{job_id}/metrics").json()) >= 3
    # the next worker takes new jobs and leaves the interrupted one alone
    worker_factory(server.var_dir, FAST_ENV)
    quick = submit(server.url, {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 2}})
    assert wait_for(server.url, quick, lambda job: job["status"] not in ("queued", "running"))["status"] == "succeeded"
    assert httpx.get(f"{server.url}/api/jobs/{job_id}").json()["status"] == "interrupted"


def test_jobs_and_metrics_survive_a_restart_of_server_and_worker(server_factory, worker_factory, tmp_path):
    var_dir = tmp_path / "kept"
    server = server_factory(env=FAST_ENV, var_dir=var_dir)
    worker = worker_factory(var_dir, FAST_ENV)
    finished = submit(server.url, {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 4}})
    wait_for(server.url, finished, lambda job: job["status"] == "succeeded")
    worker.terminate()
    worker.wait(timeout=30)
    waiting = submit(server.url, {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 3}})
    before = {job["id"]: job for job in httpx.get(f"{server.url}/api/jobs").json()}
    metrics_before = httpx.get(f"{server.url}/api/jobs/{finished}/metrics").json()
    server.stop()

    restarted = server_factory(env=FAST_ENV, var_dir=var_dir)
    after = {job["id"]: job for job in httpx.get(f"{restarted.url}/api/jobs").json()}
    assert set(after) == set(before) == {finished, waiting}
    assert after[finished] == before[finished]
    assert httpx.get(f"{restarted.url}/api/jobs/{finished}/metrics").json() == metrics_before
    assert httpx.get(f"{restarted.url}/api/jobs/{finished}/adapter").status_code == 200
    assert after[waiting]["status"] == "queued"
    worker_factory(var_dir, FAST_ENV)
    assert wait_for(restarted.url, waiting, lambda job: job["status"] not in ("queued", "running"))["status"] == "succeeded"


def embedded_worker_pids(server) -> set[int]:
    """Pids of the `app.cli worker` children of a `lorapedia serve` process."""
    import psutil

    pids = set()
    for child in psutil.Process(server.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline():
                pids.add(child.pid)
        except psutil.Error:  # it ended (or became a zombie) between the listing and the look
            pass
    return pids


def wait_for_embedded_workers(server, other_than: set[int] = frozenset()) -> set[int]:
    """The server's embedded worker pids, once there is one not in other_than."""
    deadline = time.monotonic() + 30
    while not ((pids := embedded_worker_pids(server)) - other_than):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    return pids


def assert_exit_within(pids: set[int], seconds: float) -> None:
    """Every process in pids ends (or is a zombie) within seconds."""
    import psutil

    deadline = time.monotonic() + seconds
    for pid in pids:
        try:
            process = psutil.Process(pid)
            while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, f"process {pid} outlived its server"
                time.sleep(0.1)
        except psutil.NoSuchProcess:
            pass


def test_serve_restarts_its_embedded_worker_when_it_dies_and_stops_it_on_sigterm(server_factory):
    import psutil

    server = server_factory(worker=True, env={**FAST_ENV, "LORAPEDIA_EMBEDDED_WORKER_NICE": "7"})
    first = wait_for_embedded_workers(server)
    # training yields the CPU to the web process beside it; the web process itself keeps its priority
    assert [psutil.Process(pid).nice() for pid in first] == [psutil.Process(server.process.pid).nice() + 7]
    os.kill(next(iter(first)), signal.SIGKILL)
    restarted = wait_for_embedded_workers(server, other_than=first)
    assert "exited unexpectedly" in server.log()
    job_id = submit(server.url, {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 3}})
    assert wait_for(server.url, job_id, lambda job: job["status"] not in ("queued", "running"), timeout=90)["status"] == "succeeded"
    server.stop()  # SIGTERM: uvicorn re-raises it after its graceful shutdown, which once skipped stopping the worker
    assert server.process.returncode == 128 + signal.SIGTERM
    assert_exit_within(restarted, 10)


def test_an_embedded_worker_exits_by_itself_when_its_server_is_killed(server_factory):
    server = server_factory(worker=True, env=FAST_ENV)
    workers = wait_for_embedded_workers(server)
    server.process.kill()
    server.process.wait()
    assert_exit_within(workers, 15)
