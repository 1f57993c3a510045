"""Benchmark: queued-to-first-metric latency, with a warm worker (torch imported, model cache converted).

One worker runs in this process against a fresh SQLite database. Each model gets one warm-up job
(untimed), then timed jobs: from the job row's created_at (queued) to the first metric row's
recorded_at, split into queued -> claimed (the worker's poll) and claimed -> first metric (model
load, samples before training, first optimizer step). Target: <= 2 s on CPU for smollm2-135m-instruct.

    python bench/bench_first_metric_latency.py [--runs 3] [--models tiny-llama smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.jobs import service  # noqa: E402
from app.jobs.db import init_db, make_engine  # noqa: E402
from app.jobs.tables import FINISHED_STATUSES, Job, MetricPoint  # noqa: E402
from app.calc import load_catalogue  # noqa: E402
from app.spec import JobCreate  # noqa: E402
from app.jobs.worker import run_worker  # noqa: E402
from app.training.run import run_training  # noqa: E402
from app.settings import PROJECT_ROOT, Settings  # noqa: E402

logger = logging.getLogger("bench.first_metric")
TARGET_SECONDS = 2.0
JOB = {"dataset": "addition", "lora": {"r": 8, "lora_alpha": 16}, "training": {"max_steps": 2, "eval_steps": None, "per_device_train_batch_size": 4}}


def run_job(engine, settings: Settings, model: str) -> tuple[float, float]:
    """Queue one job, wait for it to finish; (queued -> claimed, claimed -> first metric) in seconds."""
    with Session(engine) as session:
        job_id = service.create_job(session, settings, load_catalogue(), JobCreate.model_validate({"model": model, **JOB})).id
    while True:
        with Session(engine) as session:
            job = session.get(Job, job_id)
            if job.status in FINISHED_STATUSES:
                break
        time.sleep(0.05)
    if job.status != "succeeded":
        raise RuntimeError(f"job {job_id} {job.status}: {job.error}")
    with Session(engine) as session:
        first = session.exec(select(MetricPoint).where(MetricPoint.job_id == job_id).order_by(MetricPoint.step)).first()
    return (job.started_at - job.created_at).total_seconds(), (first.recorded_at - job.started_at).total_seconds()


def main() -> None:
    """Measure and print the figures and their ratio to the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["tiny-llama", "smollm2-135m-instruct"])
    parser.add_argument("--poll-seconds", type=float, default=Settings().poll_seconds)
    args = parser.parse_args()
    logging.basicConfig(level="WARNING", format="%(message)s")
    logger.setLevel("INFO")

    scratch = tempfile.TemporaryDirectory(prefix="lorapedia-bench-")
    var_dir = Path(scratch.name) / "var"
    var_dir.mkdir(parents=True)
    # share the project's converted model cache: the benchmark is about a warm cache
    (PROJECT_ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
    (var_dir / "models").symlink_to(PROJECT_ROOT / "var" / "models")
    settings = Settings(var_dir=var_dir, poll_seconds=args.poll_seconds)
    engine = make_engine(settings)
    init_db(engine)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(settings, lambda: run_training), kwargs={"stop": stop}, daemon=True)
    worker.start()

    print(f"queued-to-first-metric latency, warm worker, poll_seconds={settings.poll_seconds}, {args.runs} runs per model")
    print(f"{'model':<24} {'queued->claimed':>16} {'claimed->1st metric':>20} {'total p50':>10} {'total max':>10} {'target':>7} {'p50/target':>10}")
    for model in args.models:
        run_job(engine, settings, model)  # warm-up: model cache, allocator, first-use kernels
        runs = [run_job(engine, settings, model) for _ in range(args.runs)]
        totals = [claim + start for claim, start in runs]
        p50 = statistics.median(totals)
        print(f"{model:<24} {statistics.median(c for c, _ in runs):>15.3f}s {statistics.median(s for _, s in runs):>19.3f}s "
              f"{p50:>9.3f}s {max(totals):>9.3f}s {TARGET_SECONDS:>6.1f}s {p50 / TARGET_SECONDS:>9.2f}x")
    stop.set()
    worker.join(timeout=30)
    scratch.cleanup()


if __name__ == "__main__":
    main()
