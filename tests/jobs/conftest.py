"""Fixtures for the jobs tests: an initialised database and a way to put jobs in the queue directly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.jobs.db import init_db, make_engine
from app.jobs.tables import Job
from app.settings import PROJECT_ROOT, Settings
from tests.conftest import stop_process

TINY_TRAINING = {"max_steps": 6, "per_device_train_batch_size": 2, "eval_steps": 3, "warmup_steps": 1, "learning_rate": 5e-3}


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The settings' SQLite database (WAL), with the tables created."""
    engine = make_engine(settings)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def enqueue(engine: Engine) -> Callable[..., int]:
    """Insert a queued job row (bypassing validation, for queue mechanics) and return its id."""

    def insert(**overrides) -> int:
        fields = {"model": "tiny-llama", "dataset": "test", "config": {"lora": {"r": 4}, "training": TINY_TRAINING}}
        with Session(engine) as session:
            job = Job(**{**fields, **overrides})
            session.add(job)
            session.commit()
            return job.id

    return insert


@pytest.fixture
def worker_factory(tmp_path):
    """Start `lorapedia worker` processes on a var dir (or a DATABASE_URL in env); all are stopped afterwards."""
    processes: list[subprocess.Popen] = []

    def start(var_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")
        process_env = {**os.environ, "LORAPEDIA_VAR_DIR": str(var_dir), "LORAPEDIA_LOG_LEVEL": "info", **(env or {})}
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=PROJECT_ROOT, env=process_env,
                                   stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    yield start
    for process in processes:
        stop_process(process)
