"""Accounts on the web, in-process: sign-in cookie, bearer tokens, ownership (404/403), quotas, admission limits, open binds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.web.security import CSRF_COOKIE, CSRF_HEADER
from tests.conftest import TEST_CSRF_TOKEN
from app.accounts import create_account, create_token
from app.jobs import queue
from app.jobs.tables import JobStatus
from app.main import create_app
from app.settings import Settings
from app.spec import JobTrainingSpec

SMALL_JOB = {"model": "tiny-llama", "dataset": "addition", "lora": {"r": 4}, "training": {"max_steps": 5}}
PASSWORD = "a long enough password"


def make_client(tmp_path, **overrides) -> TestClient:
    """A client of an app with accounts on, holding a CSRF token as a browser on the site does."""
    return TestClient(create_app(Settings(var_dir=tmp_path / "var", poll_seconds=0.05, accounts=True, **overrides)),
                      cookies={CSRF_COOKIE: TEST_CSRF_TOKEN}, headers={CSRF_HEADER: TEST_CSRF_TOKEN})


@pytest.fixture
def accounts_client(tmp_path) -> Iterator[TestClient]:
    """The app with accounts on, and three accounts: ada and bob (users), root (admin)."""
    with make_client(tmp_path) as client:
        add_accounts(client)
        yield client


def add_accounts(client: TestClient) -> None:
    with Session(client.app.state.engine) as session:
        for name in ("ada", "bob", "root"):
            create_account(session, name, PASSWORD, is_admin=name == "root")


def bearer(client: TestClient, name: str) -> dict[str, str]:
    """Authorization headers with a new token of the account."""
    with Session(client.app.state.engine) as session:
        from app.accounts import find_account

        _, secret = create_token(session, find_account(session, name), "test")
    return {"Authorization": f"Bearer {secret}"}


def test_reading_stays_public_but_creating_a_job_needs_an_account(accounts_client):
    client = accounts_client
    assert client.get("/calculator").status_code == 200
    assert client.post("/api/calc", json={"model": "tiny-llama", "lora": {"r": 8}}).status_code == 200
    assert client.post("/api/explain", json={"r": 8, "lora_alpha": 16}).status_code == 200
    refused = client.post("/api/jobs", json=SMALL_JOB)
    assert refused.status_code == 401 and "sign in" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/jobs", json=SMALL_JOB, headers={"Authorization": "Bearer lpt_not-a-token"}).status_code == 401
    created = client.post("/api/jobs", json=SMALL_JOB, headers=bearer(client, "ada"))
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] is not None and created.json()["shared"] is False


def test_the_job_form_sends_a_visitor_to_sign_in_and_back(accounts_client):
    client = accounts_client
    form = client.get("/jobs/new")
    assert "sign-in-notice" in form.text
    posted = client.post("/jobs/new", data={"model": "tiny-llama", "dataset": "addition"}, follow_redirects=False,
                         headers={"Referer": str(client.base_url) + "/jobs/new?r=8"})
    assert posted.status_code == 303 and posted.headers["location"] == "/login?next=%2Fjobs%2Fnew%3Fr%3D8"


def test_signing_in_sets_a_session_cookie_that_is_httponly_and_lax(accounts_client):
    client = accounts_client
    wrong = client.post("/login", data={"name": "ada", "password": "wrong password!", "next": "/jobs"})
    assert wrong.status_code == 401 and "do not match" in wrong.text and "set-cookie" not in wrong.headers
    signed_in = client.post("/login", data={"name": "ada", "password": PASSWORD, "next": "/jobs/new"}, follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/jobs/new"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert client.get("/api/me").json()["name"] == "ada"
    assert 'id="nav-account"' in client.get("/").text
    assert client.post("/api/jobs", json=SMALL_JOB).status_code == 201  # the cookie alone signs API calls in a browser
    client.post("/logout")
    assert client.get("/api/me").status_code == 401


def test_the_cookie_is_secure_behind_tls_and_next_never_leaves_the_site(tmp_path):
    with make_client(tmp_path, public_url="https://lorapedia.example.org") as client:
        add_accounts(client)
        response = client.post("/login", data={"name": "ada", "password": PASSWORD, "next": "//evil.example/x"}, follow_redirects=False)
    assert "secure" in response.headers["set-cookie"].lower() and response.headers["location"] == "/"


def test_a_job_is_its_owners_until_shared_and_only_the_owner_or_an_admin_acts_on_it(accounts_client):
    client = accounts_client
    ada, bob, root = bearer(client, "ada"), bearer(client, "bob"), bearer(client, "root")
    job_id = client.post("/api/jobs", json=SMALL_JOB, headers=ada).json()["id"]
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/metrics", f"/api/jobs/{job_id}/events", f"/jobs/{job_id}"):
        assert client.get(path, headers=bob).status_code == 404, path
        assert client.get(path).status_code == 404, path  # nor anonymous readers
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=bob).status_code == 404
    assert [job["id"] for job in client.get("/api/jobs", headers=bob).json()] == []
    assert [job["id"] for job in client.get("/api/jobs", headers=ada).json()] == [job_id]

    assert client.post(f"/api/jobs/{job_id}/share", json={"shared": True}, headers=bob).status_code == 404
    assert client.post(f"/api/jobs/{job_id}/share", json={"shared": True}, headers=ada).json()["shared"] is True
    assert client.get(f"/api/jobs/{job_id}", headers=bob).status_code == 200
    assert [job["id"] for job in client.get("/api/jobs").json()] == [job_id]
    page = client.get(f"/jobs/{job_id}", headers=bob).text
    assert "Cancel the job" not in page and "Share with everyone" not in page
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=bob).status_code == 403
    assert client.get(f"/api/jobs/{job_id}/adapter", headers=bob).status_code == 403
    assert client.post(f"/jobs/{job_id}/cancel", headers=bob, follow_redirects=False).status_code == 403
    assert "Cancel the job" in client.get(f"/jobs/{job_id}", headers=ada).text
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=root).json()["status"] == "cancelled"  # an admin may


def test_tokens_are_made_and_revoked_through_the_api(accounts_client):
    client = accounts_client
    client.post("/login", data={"name": "bob", "password": PASSWORD})
    made = client.post("/api/tokens", json={"label": "laptop"})
    assert made.status_code == 201 and made.json()["token"].startswith("lpt_")
    client.post("/logout")
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/api/me", headers=headers).json()["name"] == "bob"
    assert client.delete(f"/api/tokens/{made.json()['id']}", headers=headers).status_code == 204
    assert client.get("/api/me", headers=headers).status_code == 401


def test_sign_in_is_refused_with_429_after_ten_failures_even_with_the_right_password(tmp_path):
    with make_client(tmp_path, login_failures=10) as client:
        add_accounts(client)
        failures = [client.post("/login", data={"name": "ada", "password": f"wrong password {n}"}).status_code for n in range(10)]
        refused = client.post("/login", data={"name": "ada", "password": PASSWORD}, follow_redirects=False)
        other_name = client.post("/login", data={"name": "bob", "password": PASSWORD}, follow_redirects=False)
        with Session(client.app.state.engine) as session:
            from_elsewhere = client.app.state.login_throttle.retry_after(session, "192.0.2.7", "ada")
    assert failures == [401] * 10
    assert refused.status_code == 429 and 590 <= int(refused.headers["retry-after"]) <= 600 and "set-cookie" not in refused.headers
    assert "Too many failed sign-ins" in refused.text and "login_failures" in refused.text
    assert other_name.status_code == 429  # the same address
    assert from_elsewhere > 0  # the same name


def test_a_users_queue_quota_refuses_the_next_job_naming_the_limit(tmp_path):
    with make_client(tmp_path, max_queued_jobs_per_user=2) as client:
        add_accounts(client)
        ada, bob = bearer(client, "ada"), bearer(client, "bob")
        assert [client.post("/api/jobs", json=SMALL_JOB, headers=ada).status_code for _ in range(2)] == [201, 201]
        refused = client.post("/api/jobs", json=SMALL_JOB, headers=ada)
        assert client.post("/api/jobs", json=SMALL_JOB, headers=bob).status_code == 201  # the quota is per user
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "2 jobs waiting" in refused.json()["detail"][0]["msg"] and "max_queued_jobs_per_user" in refused.json()["detail"][0]["msg"]


def test_a_users_daily_worker_time_counts_what_ran_and_what_waits(tmp_path):
    with make_client(tmp_path, max_gpu_seconds_per_day=60) as client:
        add_accounts(client)
        ada = bearer(client, "ada")
        first = client.post("/api/jobs", json=SMALL_JOB, headers=ada).json()
        assert 0 < first["predicted_seconds"] < 60
        # a worker ran it for 70 s of the last day
        engine = client.app.state.engine
        queue.claim_next_job(engine, "w", 30)
        queue.finish_job(engine, first["id"], "w", JobStatus.succeeded, {})
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE job SET started_at = datetime('now', '-100 seconds'), finished_at = datetime('now', '-30 seconds')")
        refused = client.post("/api/jobs", json=SMALL_JOB, headers=ada)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    message = refused.json()["detail"][0]["msg"]
    assert "used 70 s" in message and "max_gpu_seconds_per_day" in message and "60 s" in message


def test_a_job_predicted_past_the_workers_memory_or_time_is_refused_naming_the_figure(client, settings):
    # the probe of issue 11 (r=65536, batch 256 x accumulation 256) on a worker with 16 GiB
    settings.worker_memory_bytes = 16 * 2**30
    huge = {**SMALL_JOB, "lora": {"r": 65536}, "training": {"max_steps": 5, "per_device_train_batch_size": 256,
                                                             "gradient_accumulation_steps": 256}}
    refused = client.post("/api/jobs", json=huge)
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert "GiB of memory" in error["msg"] and "has 16.00 GiB (worker_memory_bytes)" in error["msg"]
    predicted = float(error["msg"].split("predicts ")[1].split(" GiB")[0].replace(",", ""))
    training = JobTrainingSpec(**huge["training"]).model_dump(mode="json")  # with the job's defaults, as admission predicts
    calc = client.post("/api/calc", json={"model": "tiny-llama", "lora": huge["lora"], "training": {**training, "base_dtype": "fp32"}})
    assert abs(predicted - calc.json()["memory"]["total_bytes"] / 2**30) < 0.01  # the calculator's own figure
    settings.job_time_limit_seconds = 0.01
    slow = client.post("/api/jobs", json=SMALL_JOB)
    assert slow.status_code == 422
    [error] = slow.json()["detail"]
    assert error["loc"] == ["body", "training", "max_steps"] and "job_time_limit_seconds" in error["msg"]


def test_a_non_loopback_bind_without_accounts_refuses_jobs_unless_marked_open(tmp_path):
    with TestClient(create_app(Settings(var_dir=tmp_path / "a", host="0.0.0.0", public_url="https://x.example"))) as client:
        refused = client.post("/api/jobs", json=SMALL_JOB)
        assert "LORAPEDIA_OPEN_INSTANCE" in client.get("/jobs/new").text
    assert refused.status_code == 403 and "LORAPEDIA_ACCOUNTS=on" in refused.json()["detail"]
    with TestClient(create_app(Settings(var_dir=tmp_path / "b", host="0.0.0.0", open_instance=True))) as client:
        assert client.post("/api/jobs", json=SMALL_JOB).status_code == 201


def test_the_owner_retries_an_interrupted_job_with_the_same_spec(accounts_client):
    client = accounts_client
    ada, bob = bearer(client, "ada"), bearer(client, "bob")
    pasted = "\n".join('{"prompt": "%d+1=", "response": "%d"}' % (n, n + 1) for n in range(12))
    job = client.post("/api/jobs", json={"model": "tiny-llama", "dataset_jsonl": pasted, "lora": {"r": 4},
                                         "training": {"max_steps": 3}}, headers=ada).json()
    assert client.post(f"/api/jobs/{job['id']}/retry", headers=ada).status_code == 409  # still queued
    engine = client.app.state.engine
    queue.claim_next_job(engine, "dead-host:1:x", 30)
    assert queue.interrupt_worker_jobs(engine, "dead-host:1:", "interrupted: test") == [job["id"]]
    client.post(f"/api/jobs/{job['id']}/share", json={"shared": True}, headers=ada)
    assert client.post(f"/api/jobs/{job['id']}/retry", headers=bob).status_code == 403
    retried = client.post(f"/api/jobs/{job['id']}/retry", headers=ada)
    assert retried.status_code == 201
    again = retried.json()
    assert (again["status"], again["retry_of"], again["owner_id"], again["config"]) == ("queued", job["id"], job["owner_id"], job["config"])
    assert queue.claim_next_job(engine, "w", 30) == again["id"]
    from app.jobs.tables import Job

    with Session(engine) as session:
        assert len(session.get(Job, again["id"]).dataset_rows) == 12  # the pasted rows came along
