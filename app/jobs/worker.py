"""The training worker: claims queued jobs from the database and runs them one at a time."""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.calc.catalogue import load_catalogue
from app.jobs import notify, predictions, queue
from app.jobs.db import WORKER_POOL_SIZE, init_db, make_engine
from app.jobs.tables import Job, JobStatus
from app.settings import Settings
from app.spec import JobSpec, RunResult

logger = logging.getLogger(__name__)

# app.training.run.run_training, handed in by app.cli (as a loader): jobs never imports training (or torch).
Trainer = Callable[..., RunResult]
PARENT_CHECK_SECONDS = 1.0
SHUTDOWN_ERROR = "interrupted: the worker was shut down during the run"
TIME_LIMIT_ERROR = "stopped: the job ran past the wall-time limit of {limit:,.0f} s (job_time_limit_seconds)"
MEASURED_FIELDS = (
    "device", "trainable_params", "total_params", "peak_memory_bytes",
    "samples_before", "samples_after", "final_train_loss", "final_eval_loss", "final_exact_match",
)
START_FIELDS = ("device", "total_steps", "trainable_params", "total_params", "samples_before")


def make_worker_id() -> str:
    """host:pid:nonce, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_worker(settings: Settings, load_trainer: Callable[[], Trainer], *, stop: threading.Event | None = None,
               parent_pid: int | None = None) -> None:
    """Claim and run jobs with the trainer load_trainer returns, until `stop` is set (by SIGTERM, SIGINT or parent_pid's exit)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    if parent_pid is not None:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop), name="parent-watch", daemon=True).start()
    # loading the trainer imports torch (seconds on a busy machine): the parent watch is already running meanwhile
    trainer = load_trainer()
    engine = make_engine(settings, pool_size=WORKER_POOL_SIZE)
    init_db(engine)
    worker_id = make_worker_id()
    logger.info("worker %s polling %s", worker_id, engine.url.render_as_string(hide_password=True))
    work = threading.Event()  # set by a PostgreSQL notice that a job was queued or changed
    listener = notify.listen(engine, lambda kind, _job_id: work.set() if kind == "job" else None)
    try:
        while not stop.is_set():
            queue.reap_expired_leases(engine)
            job_id = queue.claim_next_job(engine, worker_id, settings.lease_seconds)
            if job_id is None:
                _wait_for_work(stop, work, settings.poll_seconds)
                continue
            JobRun(engine, settings, job_id, worker_id, trainer, stop).execute()
    finally:
        if listener is not None:
            listener.stop()
        engine.dispose()
        logger.info("worker %s stopped", worker_id)


def _wait_for_work(stop: threading.Event, work: threading.Event, seconds: float) -> None:
    """Wait until a notice says there may be work, `stop` is set, or the poll interval ends."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
        if work.wait(min(remaining, notify.STOP_CHECK_SECONDS)):
            break
    work.clear()


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """Set stop once parent_pid is no longer our parent: it died and we were handed to another process."""
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent_pid:
            logger.warning("parent process %d is gone; stopping this worker", parent_pid)
            stop.set()


class JobRun:
    """One claimed job: heartbeat its lease, train it, record its metrics and its end."""

    def __init__(self, engine: Engine, settings: Settings, job_id: int, worker_id: str, trainer: Trainer, shutdown: threading.Event):
        self.engine = engine
        self.settings = settings
        self.job_id = job_id
        self.worker_id = worker_id
        self.trainer = trainer
        self.shutdown = shutdown
        self.lease_lost = threading.Event()
        self.spec: JobSpec | None = None
        self.heartbeat_done = threading.Event()
        self.deadline = time.monotonic() + settings.job_time_limit_seconds
        self.timed_out = False

    def execute(self) -> None:
        """Run the job to a final status; never raises for a failure of the job itself."""
        heartbeat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{self.job_id}", daemon=True)
        heartbeat.start()
        try:
            # a stored config the trainer cannot read fails this job, never the worker
            spec = self.spec = self._read_spec()
            result = self.trainer(
                spec,
                self.settings,
                self.output_dir,
                on_metric=self._on_metric,
                should_stop=self._should_stop,
                on_event=self._on_event,
            )
            self._finish(result)
        except Exception as exc:  # the job failed, the worker goes on to the next one
            logger.exception("job %d failed", self.job_id)
            shutil.rmtree(self.output_dir, ignore_errors=True)  # a failed run leaves no partial files
            queue.finish_job(self.engine, self.job_id, self.worker_id, JobStatus.failed, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self.heartbeat_done.set()
            heartbeat.join()

    def _read_spec(self) -> JobSpec:
        with Session(self.engine) as session:
            job = session.get(Job, self.job_id)
            if job is None:
                raise LookupError(f"job {self.job_id} is gone from the database")
            return job.spec(with_rows=True)

    def _heartbeat(self) -> None:
        while not self.heartbeat_done.wait(self.settings.heartbeat_seconds):
            try:
                if not queue.renew_lease(self.engine, self.job_id, self.worker_id, self.settings.lease_seconds):
                    logger.warning("job %d: lease lost; stopping it", self.job_id)
                    self.lease_lost.set()
                    return
            except Exception:  # a database hiccup: the next beat retries before the lease runs out
                logger.exception("job %d: heartbeat failed", self.job_id)

    @property
    def output_dir(self) -> Path:
        """Where the trainer saves this job's adapter."""
        return self.settings.adapters_dir / f"job-{self.job_id}"

    def _should_stop(self) -> bool:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return True
        return (
            self.shutdown.is_set()
            or self.lease_lost.is_set()
            or queue.is_stop_requested(self.engine, self.job_id, self.worker_id)
        )

    def _on_metric(self, metric: dict[str, Any]) -> None:
        queue.append_metric(self.engine, self.job_id, metric)

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "started":
            figures = {k: data[k] for k in START_FIELDS if k in data}
            if data.get("batch_shape") and self.spec is not None:
                figures |= self._refined_prediction(data["batch_shape"], data.get("device"))
            queue.record_start(self.engine, self.job_id, self.worker_id, figures)
        else:
            logger.info("job %d: %s %s", self.job_id, name, data)

    def _refined_prediction(self, batch_shape: dict[str, int], device: str | None) -> dict[str, Any]:
        """The calculator's prediction again, from the run's real widest micro-batch and its device and precision."""
        try:
            refined = predictions.predict(self.spec, load_catalogue(self.settings.content_dir / "models"),
                                          batch_shape=batch_shape, device=device)
        except ValueError:  # the submission-time prediction stays
            logger.exception("job %d: no refined prediction", self.job_id)
            return {}
        return {key: value for key, value in refined.items() if value is not None}

    def _finish(self, result: RunResult) -> None:
        # what the result leaves out keeps the value recorded at start (samples_before, device)
        figures = {name: value for name, value in result.model_dump(include=set(MEASURED_FIELDS)).items() if value not in (None, [])}
        if result.adapter_dir:
            figures["adapter_path"] = result.adapter_dir
        if self.timed_out and result.status != "succeeded":
            status, figures["error"] = JobStatus.failed, TIME_LIMIT_ERROR.format(limit=self.settings.job_time_limit_seconds)
        elif result.status == "succeeded":
            if result.adapter_dir:
                queue.store_adapter_archive(self.engine, self.job_id, zip_directory(Path(result.adapter_dir)))
            status = JobStatus.succeeded
        elif queue.is_stop_requested(self.engine, self.job_id, self.worker_id):
            status = JobStatus.cancelled
        else:  # the trainer stopped because this worker is shutting down, not because anyone cancelled
            status, figures["error"] = JobStatus.interrupted, SHUTDOWN_ERROR
        if queue.finish_job(self.engine, self.job_id, self.worker_id, status, figures):
            logger.info("job %d %s", self.job_id, status.value)


def zip_directory(directory: Path) -> bytes:
    """The files under `directory` as a zip, paths relative to it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()
