"""The jobs API in-process: submit with limits and 422s, read, metrics, SSE resume, cancel, adapter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlmodel import Session

from app.jobs import queue
from app.jobs.tables import JobStatus
from app.settings import PROJECT_ROOT
from tests.jobs.sse_client import parse_events

SMALL_JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 5}}


def finished_job_with_metrics(app, client, steps: int) -> int:
    """Queue a job and play a worker's part for it in the database: claim, `steps` metric rows, success."""
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    engine = app.state.engine
    assert queue.claim_next_job(engine, "test-worker", 30) == job_id
    queue.record_start(engine, job_id, "test-worker", {"total_steps": steps, "device": "cpu float32"})
    for step in range(1, steps + 1):
        queue.append_metric(engine, job_id, {"step": step, "train_loss": 5.0 - step * 0.1, "learning_rate": 1e-3})
    queue.finish_job(engine, job_id, "test-worker", JobStatus.succeeded, {"final_train_loss": 4.0})
    return job_id


def test_the_web_process_never_imports_torch():
    probe = "import sys; import app.main, app.web.routers.api_jobs, app.web.routers.jobs, app.jobs.service; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_datasets_are_listed_with_split_sizes_and_a_preview(client):
    listed = {entry["id"]: entry for entry in client.get("/api/datasets").json()}
    assert listed["addition"]["task"] == "exact_match"
    assert listed["addition"]["train_rows"] > 0 and listed["addition"]["eval_rows"] > 0
    assert set(listed["addition"]["preview"][0]) == {"prompt", "response"}


def test_a_job_is_queued_with_201_its_location_and_its_prediction_slots(client):
    response = client.post("/api/jobs", json=SMALL_JOB)
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    assert (job["status"], job["model"], job["dataset"]) == ("queued", "tiny-llama", "addition")
    assert job["config"]["lora"]["r"] == 4 and job["config"]["training"]["max_steps"] == 5
    assert "predicted_trainable_params" in job and "dataset_rows" not in job
    assert client.get("/api/jobs").json()[0]["id"] == job["id"]
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"


@pytest.mark.parametrize(
    ("change", "loc", "reason"),
    [
        ({"model": "gpt-17"}, ["body", "model"], "unknown model"),
        ({"dataset": "no-such-set"}, ["body", "dataset"], "unknown dataset"),
        ({"training": {"max_steps": 10_000}}, ["body", "training", "max_steps"], "500"),
        ({"training": {"max_steps": -1, "num_train_epochs": 90.0}}, ["body", "training", "num_train_epochs"], "500"),
        ({"training": {"max_seq_length": 4096}}, ["body", "training", "max_seq_length"], "at most 1,024 on this instance"),
        ({"training": {"learning_rate": "0.1"}}, ["body", "training", "learning_rate"], "number"),
        ({"training": {"lr_scheduler_type": "zigzag"}}, ["body", "training", "lr_scheduler_type"], "linear"),
        ({"training": {"warmup_stepz": 3}}, ["body", "training", "warmup_stepz"], "not a field here"),
        ({"lora": {"r": 0}}, ["body", "lora", "r"], "at least 1"),
        ({"lora": {"lora_dropout": 1.0}}, ["body", "lora", "lora_dropout"], "less than 1"),
        ({"dataset": None, "dataset_jsonl": '{"prompt": "hi", "response": "ho"}\n{"prompt": "no answer"}\n'}, ["body", "dataset_jsonl"], "line 2"),
        ({"dataset_jsonl": '{"prompt": "hi", "response": "ho"}'}, ["body"], "exactly one"),
        # configs the worker cannot run are refused up front, on the field at fault
        ({"lora": {"target_modules": ["nope"]}}, ["body", "lora", "target_modules"], "match no module"),
        ({"lora": {"task_type": "SEQ_CLS"}}, ["body", "lora", "task_type"], "CAUSAL_LM"),
        ({"lora": {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4}}}, ["body", "lora", "init_lora_weights"], "CUDA"),
        ({"lora": {"init_lora_weights": "eva"}}, ["body", "lora", "init_lora_weights"], "data-driven set-up"),
        ({"lora": {"init_lora_weights": "corda"}}, ["body", "lora", "init_lora_weights"], "data-driven set-up"),
        ({"lora": {"init_lora_weights": "lora_ga"}}, ["body", "lora", "init_lora_weights"], "data-driven set-up"),
        ({"lora": {"target_parameters": ["mlp.gate_proj.weight"]}}, ["body", "lora", "target_parameters"], "use target_modules"),
        ({"training": {"lr_scheduler_type": "cosine_with_min_lr"}}, ["body", "training", "lr_scheduler_type"], "lr_scheduler_kwargs"),
        ({"training": {"lr_scheduler_type": "warmup_stable_decay"}}, ["body", "training", "lr_scheduler_type"], "num_decay_steps"),
    ],
)
def test_bad_input_gets_422_naming_the_field_and_the_reason(client, change, loc, reason):
    response = client.post("/api/jobs", json={**SMALL_JOB, **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"] == loc and reason in error["msg"] for error in detail), detail
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize("lora", [{"init_lora_weights": init} for init in (False, "gaussian", "pissa", "pissa_niter_2", "olora", "orthogonal")]
                         + [{"task_type": "CAUSAL_LM"}, {"target_modules": "all-linear"}])
def test_configs_the_trainer_runs_are_queued(client, lora):
    response = client.post("/api/jobs", json={**SMALL_JOB, "lora": {"r": 4, **lora}})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"])
def test_schedulers_that_need_no_kwargs_are_queued(client, scheduler):
    response = client.post("/api/jobs", json={**SMALL_JOB, "training": {"max_steps": 5, "lr_scheduler_type": scheduler}})
    assert response.status_code == 201, response.text


def test_the_prediction_says_what_it_assumed(client):
    job = client.post("/api/jobs", json={**SMALL_JOB, "training": {"max_steps": 5, "optim": "adagrad"}}).json()
    assert job["predicted_trainable_params"] > 0
    assert {key: job["prediction_basis"][key] for key in ("base_dtype", "optimizer", "flops_per_second")} == {
        "base_dtype": "fp32", "optimizer": "adagrad", "flops_per_second": 5e10}
    assert "max_seq_length" in job["prediction_basis"]["sequences"]
    job = client.post("/api/jobs", json={**SMALL_JOB, "training": {"max_steps": 5, "optim": "sgd"}}).json()
    assert job["prediction_basis"]["optimizer"] == "sgd"


def test_a_model_outside_the_calculators_catalogue_is_queued_unpredicted(tmp_path, settings, client):
    settings.allowed_models = [str(tmp_path / "my-model")]  # an operator's local model: jobs may train it, the calculator has no config
    job = client.post("/api/jobs", json={**SMALL_JOB, "model": str(tmp_path / "my-model")})
    assert job.status_code == 201, job.text
    job = job.json()
    assert job["predicted_trainable_params"] is None and job["prediction_basis"] is None
    html = client.get(f"/jobs/{job['id']}").text
    assert "not in the calculator" in html


def test_concurrent_submissions_never_over_admit(app, client, settings, monkeypatch):
    """Counting the queue and inserting are one locked transaction: racing requests cannot pass the limit together."""
    import threading
    import time

    from app.jobs import service
    from app.calc import load_catalogue
    from app.spec import FieldError, JobCreate

    settings.max_queued_jobs = 3
    counted = queue.count_queued

    def slow_count(session):
        value = counted(session)
        time.sleep(0.2)  # every racer would read the same count here without the lock
        return value

    monkeypatch.setattr(service.queue, "count_queued", slow_count)
    outcomes: list[str] = []

    def submit():
        with Session(app.state.engine) as session:
            try:
                service.create_job(session, settings, load_catalogue(), JobCreate.model_validate(SMALL_JOB))
                outcomes.append("queued")
            except FieldError:
                outcomes.append("refused")

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 3
    with Session(app.state.engine) as session:
        assert queue.count_queued(session) == 3


def test_polls_never_read_the_pasted_rows(app, client):
    """The list, a job and its event stream leave Job.dataset_rows (up to 2 MB) in the database."""
    from sqlalchemy import event

    rows = "".join('{"prompt": "p%d", "response": "r"}\n' % n for n in range(4))
    job_id = client.post("/api/jobs", json={**SMALL_JOB, "dataset": None, "dataset_jsonl": rows}).json()["id"]
    queue.claim_next_job(app.state.engine, "w", 30)
    queue.finish_job(app.state.engine, job_id, "w", JobStatus.succeeded, {})
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        assert client.get("/api/jobs").status_code == 200
        assert client.get(f"/api/jobs/{job_id}").status_code == 200
        assert client.get("/jobs", headers={"HX-Request": "true"}).status_code == 200
        assert read_stream(client, f"/api/jobs/{job_id}/events")[-1].event == "done"
        assert read_stream(client, f"/jobs/{job_id}/events")[-1].event == "done"
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)
    assert any("FROM job" in statement for statement in statements)
    assert not [statement for statement in statements if "dataset_rows" in statement]


HUGE = "99999999999999999999999"


def test_ids_and_steps_out_of_range_are_refused_not_500(app, client):
    for path in (f"/api/jobs/{HUGE}", f"/api/jobs/{HUGE}/metrics", f"/api/jobs/{HUGE}/events", f"/api/jobs/{HUGE}/adapter",
                 f"/api/jobs/{2**63}", "/api/jobs/0", "/api/jobs/-5"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/api/jobs/{HUGE}/cancel").status_code == 404
    job_id = finished_job_with_metrics(app, client, steps=3)
    for after in (HUGE, str(2**63)):
        response = client.get(f"/api/jobs/{job_id}/metrics?after={after}")
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "after"]
        assert client.get(f"/api/jobs/{job_id}/events?after={after}").status_code == 422
    assert client.get(f"/api/jobs/{job_id}/metrics?after={2**63 - 1}").json() == []


@pytest.mark.parametrize("last_event_id", [HUGE, str(2**63), "1e3", "-3", "step 2"])
def test_a_last_event_id_that_is_no_step_is_ignored(app, client, last_event_id):
    job_id = finished_job_with_metrics(app, client, steps=3)
    events = read_stream(client, f"/api/jobs/{job_id}/events?after=1", headers={"Last-Event-ID": last_event_id})
    assert [event.id for event in events if event.event == "metric"] == ["2", "3"]
    assert events[-1].event == "done"


def test_a_full_queue_refuses_more_jobs_before_queueing(settings, client):
    settings.max_queued_jobs = 2
    assert [client.post("/api/jobs", json=SMALL_JOB).status_code for _ in range(3)] == [201, 201, 503]
    full = client.post("/api/jobs", json=SMALL_JOB)
    assert full.status_code == 503 and int(full.headers["retry-after"]) > 0
    assert "queue is full: 2 jobs are already waiting (max_queued_jobs is 2)" in full.json()["detail"][0]["msg"]
    for path in ("/api/jobs", "/api/experiments", "/api/jobs/{job_id}/retry"):  # documented, with its header
        documented = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
        assert "Retry-After" in documented["503"]["headers"] and "Retry-After" in documented["429"]["headers"]
    assert len(client.get("/api/jobs").json()) == 2


def test_pasted_rows_over_the_row_limit_are_refused(settings, client):
    settings.max_dataset_rows = 3
    rows = "".join('{"prompt": "p%d", "response": "r"}\n' % n for n in range(5))
    response = client.post("/api/jobs", json={**SMALL_JOB, "dataset": None, "dataset_jsonl": rows})
    assert response.status_code == 422 and "at most 3" in response.json()["detail"][0]["msg"]


def test_pasted_rows_are_stored_for_the_worker_but_not_shown(app, client):
    rows = "".join('{"prompt": "p%d", "response": "r"}\n' % n for n in range(4))
    job = client.post("/api/jobs", json={**SMALL_JOB, "dataset": None, "dataset_jsonl": rows}).json()
    assert job["dataset"] == "pasted" and "dataset_rows" not in job
    from app.jobs.tables import Job

    with Session(app.state.engine) as session:
        spec = session.get(Job, job["id"]).spec(with_rows=True)
    assert len(spec.dataset_rows) == 4 and spec.dataset == "pasted"


def test_unknown_jobs_are_404(client):
    for path in ("/api/jobs/999", "/api/jobs/999/metrics", "/api/jobs/999/events", "/api/jobs/999/adapter"):
        assert client.get(path).status_code == 404, path
    assert client.post("/api/jobs/999/cancel").status_code == 404


def test_metrics_after_a_step(app, client):
    job_id = finished_job_with_metrics(app, client, steps=6)
    assert [row["step"] for row in client.get(f"/api/jobs/{job_id}/metrics").json()] == [1, 2, 3, 4, 5, 6]
    assert [row["step"] for row in client.get(f"/api/jobs/{job_id}/metrics?after=4").json()] == [5, 6]
    assert client.get(f"/api/jobs/{job_id}/metrics?after=-1").status_code == 422


def read_stream(client, path: str, headers: dict | None = None):
    with client.stream("GET", path, headers=headers or {}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_events(response.iter_lines()))


def test_a_finished_job_streams_every_metric_with_its_step_as_id_then_done(app, client):
    job_id = finished_job_with_metrics(app, client, steps=5)
    events = read_stream(client, f"/api/jobs/{job_id}/events")
    metrics = [event for event in events if event.event == "metric"]
    assert [event.id for event in metrics] == ["1", "2", "3", "4", "5"]
    assert [event.json()["step"] for event in metrics] == [1, 2, 3, 4, 5]
    assert events[-1].event == "done" and events[-1].json()["status"] == "succeeded"


def test_a_reconnecting_client_resumes_after_last_event_id_with_no_gap_and_no_duplicate(app, client):
    job_id = finished_job_with_metrics(app, client, steps=7)
    resumed = read_stream(client, f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "4"})
    assert [event.id for event in resumed if event.event == "metric"] == ["5", "6", "7"]
    # Last-Event-ID wins over ?after=, as a browser's reconnection keeps the URL it started with
    resumed = read_stream(client, f"/api/jobs/{job_id}/events?after=1", headers={"Last-Event-ID": "6"})
    assert [event.id for event in resumed if event.event == "metric"] == ["7"]
    assert [event.id for event in read_stream(client, f"/api/jobs/{job_id}/events?after=5") if event.event == "metric"] == ["6", "7"]


def test_cancelling_a_queued_job_is_immediate_and_a_finished_job_cannot_be_cancelled(app, client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    response = client.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert queue.claim_next_job(app.state.engine, "w", 30) is None
    finished = finished_job_with_metrics(app, client, steps=2)
    assert client.post(f"/api/jobs/{finished}/cancel").status_code == 409


def test_cancelling_a_running_job_asks_its_worker_to_stop(app, client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    queue.claim_next_job(app.state.engine, "w", 30)
    job = client.post(f"/api/jobs/{job_id}/cancel").json()
    assert (job["status"], job["cancel_requested"]) == ("running", True)
    assert queue.is_stop_requested(app.state.engine, job_id, "w")


def test_a_running_job_whose_lease_ran_out_reads_as_interrupted(app, client):
    job_id = client.post("/api/jobs", json=SMALL_JOB).json()["id"]
    queue.claim_next_job(app.state.engine, "w", lease_seconds=-1)
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "interrupted" and "lease" in job["error"]


def test_the_adapter_is_404_until_a_zip_is_stored(app, client):
    job_id = finished_job_with_metrics(app, client, steps=1)
    assert client.get(f"/api/jobs/{job_id}/adapter").status_code == 404
    queue.store_adapter_archive(app.state.engine, job_id, b"PK\x05\x06" + b"\x00" * 18)
    response = client.get(f"/api/jobs/{job_id}/adapter")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert f"lorapedia-job-{job_id}-adapter.zip" in response.headers["content-disposition"]
    assert client.get(f"/api/jobs/{job_id}").json()["has_adapter"] is True


def test_the_job_api_is_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/datasets", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/metrics",
                 "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/adapter"):
        assert path in paths, path
    assert "text/event-stream" in paths["/api/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]


def test_a_row_longer_than_max_seq_length_is_refused_at_submission_naming_it(client):
    rows = '{"prompt": "short", "response": "fine"}\n' + '{"prompt": "%s", "response": "r"}\n' % ("long " * 40)
    pasted = client.post("/api/jobs", json={**SMALL_JOB, "dataset": None, "dataset_jsonl": rows, "training": {"max_seq_length": 64}})
    assert pasted.status_code == 422
    error = pasted.json()["detail"][0]
    # tiny-llama: one token per byte of the 200-byte prompt and 1-byte response, plus ChatML: 4 markers and "user\n", "assistant\n", 2 x "\n"
    assert error["loc"] == ["body", "dataset_jsonl"] and "row 2 of the pasted data is 222 tokens" in error["msg"]
    assert "max_seq_length is 64" in error["msg"]
    catalogue = client.post("/api/jobs", json={**SMALL_JOB, "dataset": "lora-qa", "training": {"max_seq_length": 64}})
    assert catalogue.status_code == 422 and catalogue.json()["detail"][0]["loc"] == ["body", "training", "max_seq_length"]
    assert "training row 1 of the dataset is" in catalogue.json()["detail"][0]["msg"]
    assert client.post("/api/jobs", json={**SMALL_JOB, "dataset": "lora-qa", "training": {"max_seq_length": 1024}}).status_code == 201


def test_counting_a_rows_tokens_at_submission_loads_neither_torch_nor_transformers():
    probe = ("import sys; from app.calc import load_catalogue; from app.jobs.admission import token_counter; from app.settings import Settings\n"
             "for model in load_catalogue().trainable(()):\n"
             "    counter = token_counter(model, Settings())\n"
             "    assert counter is None or counter.count({'prompt': 'p', 'response': 'r'})[0] > 2\n"
             "print('torch' in sys.modules, 'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"
