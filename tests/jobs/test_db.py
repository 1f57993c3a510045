"""Schema creation is safe when the web process and workers start at the same moment."""

import multiprocessing

from sqlalchemy import inspect

from app.jobs.db import init_db, make_engine
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
    assert {"job", "metric_point", "adapter_archive"} == set(inspect(make_engine(Settings(var_dir=tmp_path))).get_table_names())
