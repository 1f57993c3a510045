"""The schema by Alembic migrations: safe when processes start at once, old SQLite databases upgrade keeping their rows."""

import multiprocessing

from sqlalchemy import inspect, text
from sqlmodel import Session, select

from alembic.script import ScriptDirectory
from app.accounts.tables import Account

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.jobs.db import MIGRATIONS_DIR, init_db, make_engine, schema_metadata
from app.jobs.tables import Job, JobStatus
from app.settings import Settings


def _create(var_dir: str, barrier) -> None:
    engine = make_engine(Settings(var_dir=var_dir))
    barrier.wait()
    init_db(engine)


def test_concurrent_init_db_creates_every_table_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_create, args=(str(tmp_path), barrier)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    engine = make_engine(Settings(var_dir=tmp_path))
    assert set(inspect(engine).get_table_names()) == set(schema_metadata().tables) | {"alembic_version"}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


# The schema the last version before migrations made (create_all of its tables, as `lorapedia init-db` ran it),
# less final_exact_match, which an even older version lacked and add_missing_columns added at start-up.
OLD_SCHEMA = """
CREATE TABLE job (device VARCHAR, total_steps INTEGER, trainable_params BIGINT, total_params BIGINT, peak_memory_bytes BIGINT,
  predicted_trainable_params BIGINT, predicted_memory_bytes BIGINT, final_train_loss FLOAT, final_eval_loss FLOAT,
  samples_before JSON, samples_after JSON, model VARCHAR NOT NULL, dataset VARCHAR NOT NULL, prediction_basis JSON,
  id INTEGER NOT NULL, status VARCHAR(11) NOT NULL, created_at DATETIME NOT NULL, started_at DATETIME, finished_at DATETIME,
  worker_id VARCHAR, heartbeat_at DATETIME, lease_expires_at DATETIME, cancel_requested BOOLEAN NOT NULL, error VARCHAR,
  adapter_path VARCHAR, dataset_rows JSON, config JSON NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_job_status ON job (status);
CREATE INDEX ix_job_lease_expires_at ON job (lease_expires_at);
CREATE TABLE metric_point (step INTEGER NOT NULL, train_loss FLOAT, learning_rate FLOAT, grad_norm FLOAT, tokens_per_second FLOAT,
  elapsed_seconds FLOAT, eval_loss FLOAT, exact_match FLOAT, id INTEGER NOT NULL, job_id INTEGER NOT NULL,
  recorded_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (job_id, step), FOREIGN KEY(job_id) REFERENCES job (id));
CREATE INDEX ix_metric_point_job_id ON metric_point (job_id);
CREATE TABLE adapter_archive (job_id INTEGER NOT NULL, size_bytes BIGINT NOT NULL, content BLOB NOT NULL,
  created_at DATETIME NOT NULL, PRIMARY KEY (job_id), FOREIGN KEY(job_id) REFERENCES job (id));
INSERT INTO job (model, dataset, config, status, created_at, cancel_requested, final_train_loss)
  VALUES ('tiny-llama', 'addition', '{"lora": {"r": 8}, "training": {}}', 'succeeded', '2026-11-01 10:00:00.000000', 0, 1.25);
INSERT INTO metric_point (step, train_loss, job_id, recorded_at) VALUES (1, 1.5, 1, '2026-11-01 10:00:01.000000');
INSERT INTO adapter_archive (job_id, size_bytes, content, created_at) VALUES (1, 3, x'504b03', '2026-11-01 10:00:02.000000');
"""


def test_a_sqlite_database_of_the_version_before_migrations_upgrades_keeping_its_rows(tmp_path):
    engine = make_engine(Settings(var_dir=tmp_path))
    with engine.begin() as connection:
        for statement in filter(str.strip, OLD_SCHEMA.split(";")):
            connection.exec_driver_sql(statement)
    init_db(engine)
    with Session(engine) as session:
        [job] = session.exec(select(Job)).all()
        assert (job.model, job.status, job.final_train_loss, job.final_exact_match) == ("tiny-llama", JobStatus.succeeded, 1.25, None)
        assert (job.owner_id, job.shared, job.spec().lora.r) == (None, False, 8)
        session.add(Account(name="ada", password_hash="x"))
        session.commit()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT train_loss FROM metric_point WHERE job_id = 1")).scalar() == 1.5
        assert connection.execute(text("SELECT size_bytes FROM adapter_archive")).scalar() == 3
        # the upgraded database is the schema the models declare, as a fresh one is
        assert compare_metadata(MigrationContext.configure(connection), schema_metadata()) == []


def test_a_fresh_database_matches_the_models_and_a_second_upgrade_changes_nothing(tmp_path):
    engine = make_engine(Settings(var_dir=tmp_path))
    init_db(engine)
    init_db(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema_metadata()) == []
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
