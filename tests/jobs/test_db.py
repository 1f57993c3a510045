"""Schema creation is safe when the web process and workers start at the same moment."""

import multiprocessing

from sqlalchemy import inspect, text
from sqlmodel import Session, select

from app.jobs.db import init_db, make_engine
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
    assert {"job", "metric_point", "adapter_archive", "experiment", "module_tree"} == set(inspect(make_engine(Settings(var_dir=tmp_path))).get_table_names())


def test_a_database_from_before_a_new_column_gains_it_and_keeps_its_rows(tmp_path):
    engine = make_engine(Settings(var_dir=tmp_path))
    init_db(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE job DROP COLUMN final_exact_match"))  # as an older version made it
        connection.execute(text("INSERT INTO job (model, dataset, config, status, created_at, cancel_requested) "
                                "VALUES ('tiny-llama', 'addition', '{}', 'succeeded', '2026-11-01 10:00:00', 0)"))
    init_db(engine)
    assert "final_exact_match" in {column["name"] for column in inspect(engine).get_columns("job")}
    with Session(engine) as session:
        [job] = session.exec(select(Job)).all()
    assert (job.model, job.status, job.final_exact_match) == ("tiny-llama", JobStatus.succeeded, None)
