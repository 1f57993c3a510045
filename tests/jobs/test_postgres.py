"""Several workers on one PostgreSQL queue: FOR UPDATE SKIP LOCKED claims, no job claimed twice.

`make test` installs Debian's postgresql package when it is missing; the fixture runs a private
cluster in a temporary directory on a free port, as the `postgres` user when the tests run as root.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from app.jobs.queue import claim_next_job
from app.jobs.worker import run_worker
from app.jobs.tables import Job, JobStatus
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.jobs.db import init_db, make_engine, schema_metadata
from app.settings import PROJECT_ROOT, Settings
from tests.conftest import free_port
from tests.jobs.test_end_to_end import FAST_ENV, LEARNING_JOB, follow, submit, wait_for

pytestmark = pytest.mark.postgres

CLAIM_SCRIPT = """
import json, sys
from app.jobs.db import make_engine
from app.jobs.queue import claim_next_job
from app.settings import Settings
engine = make_engine(Settings())
with engine.connect():
    pass  # connect before the start line, so neither claimer gets a head start
print("ready", flush=True)
sys.stdin.readline()
claimed = []
while (job_id := claim_next_job(engine, sys.argv[1], lease_seconds=60)) is not None:
    claimed.append(job_id)
print(json.dumps(claimed))
"""


def postgres_bin() -> Path:
    """The directory of initdb and pg_ctl of Debian's postgresql package."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    return Path(found[-1]).parent


def as_cluster_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run the command as `postgres` when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh private PostgreSQL cluster on 127.0.0.1; its SQLAlchemy URL."""
    binaries = postgres_bin()
    # not under pytest's tmp dir: its parents are private to root, and the cluster runs as postgres
    root = Path(tempfile.mkdtemp(prefix="lorapedia-pg-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(as_cluster_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(as_cluster_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start",
                                     "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"]), check=True, capture_output=True)
    try:
        subprocess.run(as_cluster_owner([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "lorapedia"]),
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/lorapedia"
    finally:
        subprocess.run(as_cluster_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_worker_processes_claiming_from_one_queue_never_take_the_same_job(postgres_url, tmp_path):
    settings = Settings(var_dir=tmp_path / "var", database_url=postgres_url)
    engine = make_engine(settings)
    init_db(engine)
    with Session(engine) as session:
        session.add_all([Job(model="tiny-llama", dataset="addition", config={"lora": {}, "training": {}}) for _ in range(500)])
        session.commit()
        job_ids = sorted(session.exec(select(Job.id).where(Job.status == "queued")).all())
    env = {**os.environ, "DATABASE_URL": postgres_url, "LORAPEDIA_VAR_DIR": str(tmp_path / "var")}
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, f"claimer-{n}"], cwd=PROJECT_ROOT, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(2)]
    for process in claimers:
        assert process.stdout.readline().strip() == "ready"
    # both are imported and connected: release them together so the claims really overlap
    for process in claimers:
        process.stdin.write("go\n")
        process.stdin.flush()
    claims = [json.loads(process.communicate(timeout=120)[0]) for process in claimers]
    assert not set(claims[0]) & set(claims[1]), "a job was claimed twice"
    assert sorted(claims[0] + claims[1]) == job_ids
    assert claims[0] and claims[1], "one process took every job: the race was not exercised"
    with Session(engine) as session:
        owners = {job.id: job.worker_id for job in session.exec(select(Job)).all()}
    assert all(owners[job_id] == "claimer-0" for job_id in claims[0])
    engine.dispose()


def test_two_real_workers_share_a_postgresql_queue_end_to_end(postgres_url, server_factory, worker_factory, tmp_path):
    env = {**FAST_ENV, "DATABASE_URL": postgres_url}
    server = server_factory(env=env)
    for _ in range(2):
        worker_factory(server.var_dir, env)
    quick = {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 3}}
    job_ids = [submit(server.url, quick) for _ in range(4)]
    finished = [wait_for(server.url, job_id, lambda job: job["status"] not in ("queued", "running"), timeout=180) for job_id in job_ids]
    assert [job["status"] for job in finished] == ["succeeded"] * 4
    for job_id in job_ids:
        assert [row["step"] for row in httpx.get(f"{server.url}/api/jobs/{job_id}/metrics").json()] == [1, 2, 3]
        assert httpx.get(f"{server.url}/api/jobs/{job_id}/adapter").status_code == 200


def test_a_claim_skips_a_row_another_worker_has_locked_instead_of_waiting_for_it(postgres_url, tmp_path):
    engine = make_engine(Settings(var_dir=tmp_path / "var", database_url=postgres_url))
    init_db(engine)
    with Session(engine) as session:
        jobs = [Job(model="tiny-llama", dataset="addition", config={"lora": {}, "training": {}}) for _ in range(2)]
        session.add_all(jobs)
        session.commit()
        locked, free = sorted(job.id for job in jobs)
    claimed: list[int | None] = []
    with engine.connect() as other_worker:
        transaction = other_worker.begin()  # another worker is between its SELECT ... FOR UPDATE and its commit
        other_worker.execute(select(Job.id).where(Job.id == locked).with_for_update())
        claimer = threading.Thread(target=lambda: claimed.append(claim_next_job(engine, "w", lease_seconds=60)), daemon=True)
        claimer.start()
        claimer.join(timeout=15)
        waited = claimer.is_alive()
        transaction.rollback()
    claimer.join(timeout=15)
    assert not waited, "the claim waited for the locked row instead of skipping it"
    assert claimed == [free]
    with Session(engine) as session:  # leave no queued job behind for the other tests on this cluster
        session.get(Job, locked).status = JobStatus.cancelled
        session.commit()


@pytest.mark.slow
def test_two_web_processes_and_three_workers_run_20_jobs_each_exactly_once(postgres_url, server_factory, worker_factory, tmp_path):
    env = {**FAST_ENV, "DATABASE_URL": postgres_url, "LORAPEDIA_MAX_QUEUED_JOBS": "30"}
    webs = [server_factory(env=env, var_dir=tmp_path / f"web-{n}") for n in range(2)]
    for n in range(3):
        worker_factory(tmp_path / f"worker-{n}", env)
    quick = {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 2}}
    job_ids = [submit(webs[n % 2].url, quick) for n in range(20)]
    watched = submit(webs[0].url, {**LEARNING_JOB, "training": {**LEARNING_JOB["training"], "max_steps": 20}})
    # the job queued through one web process streams through the other, step by step, to its end
    events = follow(webs[1].url, watched)
    assert [event.id for event in events if event.event == "metric"] == [str(step) for step in range(1, 21)]
    assert events[-1].event == "done" and events[-1].json()["status"] == "succeeded"
    finished = [wait_for(webs[n % 2].url, job_id, lambda job: job["status"] not in ("queued", "running"), timeout=240)
                for n, job_id in enumerate(job_ids)]
    assert [job["status"] for job in finished] == ["succeeded"] * 20
    claims = "".join((tmp_path / f"worker-{n}.log").read_text() for n in range(3))
    for job in finished:
        assert claims.count(f"claimed job {job['id']}\n") == 1, job["id"]  # claimed once, by one worker
        assert [row["step"] for row in httpx.get(f"{webs[1].url}/api/jobs/{job['id']}/metrics").json()] == [1, 2]
    assert len({job["worker_id"] for job in finished}) >= 2, "one worker took every job: the sharing was not exercised"
    engine = make_engine(Settings(var_dir=tmp_path / "check", database_url=postgres_url))
    with engine.connect() as connection:  # the migrations built on PostgreSQL exactly what the models declare
        assert compare_metadata(MigrationContext.configure(connection), schema_metadata()) == []
    engine.dispose()


def test_the_worker_never_logs_the_database_password(postgres_url, tmp_path, caplog):
    # the private cluster trusts every local connection, so any password in the URL connects
    with_password = postgres_url.replace("postgres@", "postgres:not-for-logs@")
    settings = Settings(var_dir=tmp_path / "var", database_url=with_password)
    stopped = threading.Event()
    stopped.set()  # the worker connects, says where it polls, and ends
    caplog.set_level(logging.INFO, logger="app.jobs.worker")
    # off the main thread, so it leaves this process's signal handlers alone
    worker = threading.Thread(target=run_worker, args=(settings, lambda: None), kwargs={"stop": stopped})
    worker.start()
    worker.join(timeout=60)
    assert "polling postgresql+psycopg://postgres:***@127.0.0.1" in caplog.text
    assert "not-for-logs" not in caplog.text
