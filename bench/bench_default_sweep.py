"""Wall time of the job form's default four-value sweep on SmolLM2, one job after another as one worker runs them.

Each job is the job form's default (JobTrainingSpec, JobLoraSpec) with one field at each of its proposed values
(app/spec/sweeps.py PROPOSED: r 4/8/16/64 unless told otherwise), trained by app.training.run.run_training. Prints
each job's wall time and where it went (load, tokenise, wrap, train with its evaluations, eval alone, save, samples),
and the sweep's total against the target.

    .venv/bin/python bench/bench_default_sweep.py [--field r] [--dataset lora-qa]

Target: the four jobs in at most 300 s (a few minutes on this project's 2-core CPU).
"""

from __future__ import annotations

from app.settings import get_settings  # noqa: I001 -- first: OMP_WAIT_POLICY must be set before torch loads OpenMP

get_settings().apply_worker_environment()

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from app.spec import JobSpec
from app.spec.sweeps import ExperimentCreate, proposed_values, value_label
from app.training.run import run_training

TARGET_SECONDS = 300.0


def main() -> None:
    """Run the sweep's jobs in turn and print their wall times and phases."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dataset", default="lora-qa", help="the job form's first dataset")
    parser.add_argument("--field", default="r")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    values = proposed_values(args.field)
    jobs = ExperimentCreate(field=args.field, values=values, base={"model": args.model, "dataset": args.dataset}).variants()
    settings = get_settings()
    print(f"{args.model} on {args.dataset}, the job form's defaults, {args.field} over {values}; "
          f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    total = 0.0
    for value, job in zip(values, jobs):
        spec = JobSpec(model=job.model, dataset=job.dataset, lora=job.lora, training=job.training)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as output_dir:
            result = run_training(spec, settings, Path(output_dir), lambda _metric: None, lambda: False)
        seconds = time.perf_counter() - started
        total += seconds
        phases = ", ".join(f"{name} {phase:.1f} s" for name, phase in result.phase_seconds.items())
        print(f"{value_label(args.field, value):<24}{seconds:>7.1f} s  ({phases}; {result.device})")
    print(f"sweep of {len(values)} jobs: {total:.0f} s = {total / TARGET_SECONDS:.2f}x of the {TARGET_SECONDS:.0f} s target; "
          f"load average now {' '.join(f'{load:.1f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
