"""`lorapedia worker` as a real process: it stops cleanly on SIGTERM (handing a running job back as interrupted) and
by itself when the `serve` process that started it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app.jobs.tables import Job, MetricPoint
from app.settings import PROJECT_ROOT
from tests.conftest import stop_process
from tests.jobs.test_end_to_end import LONG_JOB

# a lease of a minute: a job that ends sooner was ended by its own worker, not by a reaper
WORKER_ENV = {"LORAPEDIA_POLL_SECONDS": "0.05", "LORAPEDIA_HEARTBEAT_SECONDS": "0.3", "LORAPEDIA_LEASE_SECONDS": "60",
              "LORAPEDIA_LOG_LEVEL": "info"}
# the parent as `serve` is: it starts the worker through EmbeddedWorker, then only sleeps until it is killed
SERVE_LIKE_PARENT = """
import sys, time
from pathlib import Path
from app.cli import EmbeddedWorker
worker = EmbeddedWorker()
worker.start()
Path(sys.argv[1]).write_text(str(worker.process.pid))
time.sleep(600)
"""
# longer than the orphan watch's check interval: a worker that wrongly thinks itself orphaned has stopped by then
SETTLE_SECONDS = 2.5
# `serve` SIGKILLs its worker this long after SIGTERM; a clean exit must come first, even on a machine this busy
STOP_GRACE_SECONDS = 15


def process_env(var_dir: Path) -> dict[str, str]:
    return {**os.environ, **WORKER_ENV, "LORAPEDIA_VAR_DIR": str(var_dir)}


def wait_for_text(path: Path, text: str, timeout: float = 90) -> None:
    """Wait until the log file at path contains text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the log:\n{path.read_text(errors='replace')[-3000:]}")


def is_running(pid: int) -> bool:
    """Whether pid is a live process (an orphan's zombie, waiting for an init that may never reap it, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def start_worker(var_dir: Path, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=PROJECT_ROOT, env=process_env(var_dir),
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


def test_an_idle_worker_stays_up_then_exits_with_0_on_sigterm(tmp_path):
    log = tmp_path / "worker.log"
    worker = start_worker(tmp_path / "var", log)
    try:
        wait_for_text(log, "polling")
        time.sleep(SETTLE_SECONDS)
        # no parent to watch: nothing else may stop it (a process loaded with torch takes seconds to exit, so the log tells)
        assert worker.poll() is None and "stopped" not in log.read_text(), log.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=STOP_GRACE_SECONDS) == 0, log.read_text()
        assert "stopped" in log.read_text()
    finally:
        stop_process(worker)


def test_a_worker_started_as_serve_starts_it_stops_by_itself_when_its_parent_is_killed(tmp_path):
    log, pid_file = tmp_path / "parent.log", tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", SERVE_LIKE_PARENT, str(pid_file)], cwd=PROJECT_ROOT,
                              env=process_env(tmp_path / "var"), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    worker_pid = None
    try:
        wait_for_text(log, "polling")  # the worker shares its parent's log
        worker_pid = int(pid_file.read_text())
        time.sleep(SETTLE_SECONDS)
        # its parent is alive: it keeps running
        assert is_running(worker_pid) and "is gone" not in log.read_text() and "stopped" not in log.read_text(), log.read_text()
        parent.kill()  # as SIGKILL or the OOM killer would: the parent cannot stop its worker
        parent.wait()
        killed = time.monotonic()
        while is_running(worker_pid) and time.monotonic() - killed < STOP_GRACE_SECONDS:
            time.sleep(0.1)
        assert not is_running(worker_pid), log.read_text()
        assert f"parent process {parent.pid} is gone" in log.read_text()
    finally:
        stop_process(parent)
        if worker_pid is not None and is_running(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_during_a_job_hands_it_back_interrupted_and_claims_nothing_more(tmp_path, settings, engine, enqueue):
    config = {"lora": LONG_JOB["lora"], "training": LONG_JOB["training"]}
    running_id = enqueue(model="tiny-llama", dataset="addition", config=config)
    log = tmp_path / "worker.log"
    worker = start_worker(settings.var_dir, log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _steps(engine, running_id):
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)
        assert _steps(engine, running_id), log.read_text()
        waiting_id = enqueue(model="tiny-llama", dataset="addition", config=config)
        worker.send_signal(signal.SIGTERM)
        # within a step, and well inside the 60 s lease: the reaper cannot be what ends the job
        assert worker.wait(timeout=STOP_GRACE_SECONDS) == 0, log.read_text()
    finally:
        stop_process(worker)
    with Session(engine) as session:
        running, waiting = session.get(Job, running_id), session.get(Job, waiting_id)
        assert running.status == "interrupted" and "shut down" in running.error
        assert running.finished_at is not None
        assert 0 < len(_steps(engine, running_id)) < LONG_JOB["training"]["max_steps"]
        assert waiting.status == "queued" and waiting.worker_id is None


def _steps(engine, job_id: int) -> list[int]:
    with Session(engine) as session:
        return list(session.exec(select(MetricPoint.step).where(MetricPoint.job_id == job_id)))
