"""The worker loop against a scripted trainer (the end-to-end tests use the real run_training)."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app.spec import RunResult
from app.jobs import queue
from app.jobs.tables import AdapterArchive, Job, JobStatus, MetricPoint
from app.jobs.worker import run_worker


class ScriptedTrainer:
    """Follows run_training's contract: reports start, one metric per step, honours should_stop."""

    def __init__(self, steps: int = 5, step_seconds: float = 0.0, fail_at: int | None = None):
        self.steps, self.step_seconds, self.fail_at = steps, step_seconds, fail_at
        self.started = threading.Event()

    def __call__(self, spec, settings, output_dir: Path, on_metric, should_stop, on_event=None) -> RunResult:
        on_event("started", {"device": "cpu float32", "total_steps": self.steps, "trainable_params": 123, "samples_before": [{"prompt": "p", "answer": "a"}]})
        self.started.set()
        for step in range(1, self.steps + 1):
            if should_stop():
                return RunResult(status="cancelled", device="cpu float32", trainable_params=123, total_params=1000,
                                 total_steps=self.steps, steps_completed=step - 1)
            if step == self.fail_at:
                raise RuntimeError("scripted failure")
            time.sleep(self.step_seconds)
            on_metric({"step": step, "train_loss": 3.0 / step, "learning_rate": 1e-3, "grad_norm": 1.0, "tokens_per_second": 100.0, "elapsed_seconds": step * 0.01})
        output_dir.mkdir(parents=True)
        (output_dir / "adapter_config.json").write_text('{"r": 4}')
        return RunResult(status="succeeded", device="cpu float32", trainable_params=123, total_params=1000,
                         peak_memory_bytes=10_000, adapter_dir=str(output_dir), total_steps=self.steps,
                         steps_completed=self.steps, final_train_loss=0.6, final_eval_loss=0.7)


@pytest.fixture
def start_worker(settings):
    """Run the worker loop in a thread with a given trainer; stopped after the test."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(trainer) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=run_worker, args=(settings, lambda: trainer), kwargs={"stop": stop}, daemon=True)
        thread.start()
        running.append((thread, stop))
        return stop

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(timeout=10)


def wait_for_status(engine, job_id: int, statuses: set[JobStatus], timeout: float = 10) -> Job:
    """Poll the job until it reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            job = session.get(Job, job_id)
            if job.status in statuses:
                return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} is {job.status}, not in {statuses}")


def wait_for_metrics(engine, job_id: int, count: int, timeout: float = 10) -> None:
    """Poll until the job has at least `count` metric rows."""
    deadline = time.monotonic() + timeout
    while len(metric_steps(engine, job_id)) < count:
        assert time.monotonic() < deadline, f"job {job_id} wrote fewer than {count} metrics"
        time.sleep(0.01)


def metric_steps(engine, job_id: int) -> list[int]:
    with Session(engine) as session:
        return list(session.exec(select(MetricPoint.step).where(MetricPoint.job_id == job_id).order_by(MetricPoint.step)).all())


def test_a_job_runs_to_success_with_metrics_figures_and_an_adapter_zip(engine, enqueue, start_worker):
    job_id = enqueue()
    start_worker(ScriptedTrainer(steps=5))
    job = wait_for_status(engine, job_id, {JobStatus.succeeded})
    assert metric_steps(engine, job_id) == [1, 2, 3, 4, 5]
    assert (job.device, job.total_steps, job.trainable_params, job.final_eval_loss) == ("cpu float32", 5, 123, 0.7)
    assert job.samples_before == [{"prompt": "p", "answer": "a"}]
    with Session(engine) as session:
        archive = session.get(AdapterArchive, job_id)
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["adapter_config.json"]


def test_cancel_stops_a_running_job_and_keeps_its_metrics(engine, enqueue, start_worker):
    job_id = enqueue()
    trainer = ScriptedTrainer(steps=1000, step_seconds=0.01)
    start_worker(trainer)
    wait_for_metrics(engine, job_id, 3)
    with Session(engine) as session:
        session.get(Job, job_id).cancel_requested = True
        session.commit()
    job = wait_for_status(engine, job_id, {JobStatus.cancelled})
    assert 0 < len(metric_steps(engine, job_id)) < 1000
    assert job.finished_at is not None


def test_a_trainer_error_fails_the_job_and_the_worker_goes_on(engine, enqueue, start_worker):
    failing, following = enqueue(), enqueue()
    start_worker(ScriptedTrainer(steps=3, fail_at=2))
    job = wait_for_status(engine, failing, {JobStatus.failed})
    assert job.error == "RuntimeError: scripted failure"
    assert metric_steps(engine, failing) == [1]
    wait_for_status(engine, following, {JobStatus.failed})


def test_shutting_the_worker_down_interrupts_its_job(engine, enqueue, start_worker):
    job_id = enqueue()
    trainer = ScriptedTrainer(steps=1000, step_seconds=0.01)
    stop = start_worker(trainer)
    assert trainer.started.wait(10)
    stop.set()
    job = wait_for_status(engine, job_id, {JobStatus.interrupted})
    assert "shut down" in job.error


def test_the_heartbeat_keeps_a_long_job_leased(settings, engine, enqueue, start_worker):
    settings.lease_seconds, settings.heartbeat_seconds = 0.6, 0.1
    job_id = enqueue()
    start_worker(ScriptedTrainer(steps=60, step_seconds=0.025))
    wait_for_status(engine, job_id, {JobStatus.succeeded})
    assert queue.reap_expired_leases(engine) == []


@pytest.mark.parametrize("config", [{"lora": {"r": 4}}, {"training": {}}, {}])
def test_a_config_the_worker_cannot_read_fails_its_job_and_the_worker_goes_on(engine, enqueue, start_worker, config):
    broken, following = enqueue(config=config), enqueue()
    start_worker(ScriptedTrainer(steps=2))
    job = wait_for_status(engine, broken, {JobStatus.failed})
    assert "for JobSpec" in job.error and job.finished_at is not None
    assert wait_for_status(engine, following, {JobStatus.succeeded}).error is None


class ShapeReportingTrainer(ScriptedTrainer):
    """Reports the run's widest micro-batch (and optionally its device) at start, as run_training does."""

    def __init__(self, *args, device: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = device

    def __call__(self, spec, settings, output_dir: Path, on_metric, should_stop, on_event=None) -> RunResult:
        def with_shape(name, data):
            if name == "started":
                data = {**data, "batch_shape": {"rows": 4, "width": 90, "loss_tokens": 60}} | (
                    {"device": self.device} if self.device else {})
            on_event(name, data)
        return super().__call__(spec, settings, output_dir, on_metric, should_stop, with_shape)


def test_the_worker_predicts_again_from_the_runs_real_batch(engine, enqueue, start_worker):
    from app.calc import load_catalogue
    from app.jobs.predictions import predict
    from app.spec import JobSpec

    config = {"lora": {"r": 16, "target_modules": "all-linear"}, "training": {"per_device_train_batch_size": 4, "max_seq_length": 256}}
    spec = JobSpec.model_validate({"model": "smollm2-135m-instruct", "dataset": "lora-qa", **config})
    submitted = predict(spec, load_catalogue())
    job_id = enqueue(model="smollm2-135m-instruct", dataset="lora-qa", config=config, **submitted)
    start_worker(ShapeReportingTrainer(steps=2))
    job = wait_for_status(engine, job_id, {JobStatus.succeeded})
    refined = predict(spec, load_catalogue(), batch_shape={"rows": 4, "width": 90, "loss_tokens": 60})
    assert job.predicted_memory_bytes == refined["predicted_memory_bytes"] < submitted["predicted_memory_bytes"]
    assert "widest micro-batch" in job.prediction_basis["sequences"]
    assert "max_seq_length" in submitted["prediction_basis"]["sequences"]


def test_the_worker_predicts_for_the_precision_the_run_reports(engine, enqueue, start_worker):
    """A worker training bf16 weights on CPU is predicted as a bf16 CPU run, not the submission's fp32."""
    from app.calc import load_catalogue
    from app.jobs.predictions import predict
    from app.spec import JobSpec

    config = {"lora": {"r": 8}, "training": {"per_device_train_batch_size": 4, "max_seq_length": 256}}
    spec = JobSpec.model_validate({"model": "smollm2-135m-instruct", "dataset": "lora-qa", **config})
    job_id = enqueue(model="smollm2-135m-instruct", dataset="lora-qa", config=config, **predict(spec, load_catalogue()))
    device = "cpu bfloat16 weights, fp32 adapters"
    start_worker(ShapeReportingTrainer(steps=2, device=device))
    job = wait_for_status(engine, job_id, {JobStatus.succeeded})
    shape = {"rows": 4, "width": 90, "loss_tokens": 60}
    bf16 = predict(spec, load_catalogue(), batch_shape=shape, device=device)
    fp32 = predict(spec, load_catalogue(), batch_shape=shape)
    assert job.predicted_memory_bytes == bf16["predicted_memory_bytes"] < fp32["predicted_memory_bytes"]
    assert job.prediction_basis["base_dtype"] == "bf16" and "resident set" in job.prediction_basis["memory_basis"]
