"""Predicted (app.calc.compute) against measured peak memory of real LoRA training steps, across shapes.

Each shape trains in a fresh process, so its peak is its own: the process's resident set (CPU) or
torch.cuda.max_memory_allocated (CUDA), measured by app.training.memory over a few optimizer steps
on sequences of exactly max_seq_length tokens, every token a target (the calculator assumes full
sequences and logits for every token).

Two comparisons, each as measured/predicted and as the estimate's error:
- total: the measured peak (CPU: peak RSS of the process; CUDA: max allocated) against the calculator's total;
- added: what training adds (CPU: peak minus the resident set before the model loads, which holds the
  interpreter and libraries; CUDA: max allocated) against the estimate less the part neither includes
  (CPU: the process's own resident set, CPU_PROCESS_BYTES; CUDA: the calculator's allocated_bytes, which
  leaves out the CUDA context and the allocator's slack).

Then the default job of each dataset (the job form's defaults read from JOB_DEFAULTS, SmolLM2), each in a
fresh process, submitted through app.jobs.service and run by the worker's JobRun on a scratch database: the
job page's measured peak against the prediction made at submission (every sequence max_seq_length long) and
the one the job page shows, which the worker makes once it has tokenised the data (the run's widest
micro-batch and its loss positions, app.jobs.predictions).

    .venv/bin/python bench/bench_memory_prediction.py [--model smollm2-135m-instruct] [--steps 2] [--only jobs|shapes] [--datasets ...] [--job-max-steps N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SHAPES = [  # (per_device_train_batch_size, max_seq_length, gradient_checkpointing)
    (1, 128, False),
    (4, 128, False),
    (1, 512, False),
    (4, 256, False),
    (4, 256, True),
]
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}


def measure(model_id: str, batch: int, seq: int, checkpointing: bool, steps: int) -> dict:
    """Train `steps` steps of one shape in this process; return baseline and peak bytes and the device."""
    import torch
    from peft import LoraConfig, get_peft_model

    from app.settings import get_settings
    from app.training.data import Example, optimizer_steps
    from app.training.loop import train_loop
    from app.training.memory import PeakMemory
    from app.training.loading import load_model, pick_device
    from app.spec import TrainingSpec

    torch.manual_seed(0)
    device, dtype = pick_device()
    memory = PeakMemory(device)
    baseline = memory.start()
    loaded = load_model(model_id, get_settings(), seed=0)
    model = get_peft_model(loaded.model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    if checkpointing:
        model.get_base_model().activation_checkpointing_enable()
    vocab = loaded.model.config.vocab_size
    rows = []
    for _ in range(batch * 4):
        ids = torch.randint(0, vocab, (seq,)).tolist()
        rows.append([Example(ids, ids)])
    config = TrainingSpec(per_device_train_batch_size=batch, max_seq_length=seq, optim="adamw_torch",
                            learning_rate=1e-4, gradient_checkpointing=checkpointing)
    stream = optimizer_steps(rows, batch, 1, 0, loaded.tokenizer.pad_token_id)
    train_loop(model, stream, config, steps, loaded.device, lambda: {}, lambda _metric: memory.sample(), lambda: False)
    return {"device": device.type, "dtype": str(dtype).removeprefix("torch."), "baseline": baseline,
            "peak": memory.peak_bytes()}


# Each dataset's default job (the job form's defaults: JOB_DEFAULTS and peft's LoRA defaults), and the r=16
# all-linear job issue 9 reported at 0.55 on its job page.
JOBS = (("lora-qa", {}), ("telegram-style", {}), ("addition", {}), ("lora-qa", {"r": 16, "target_modules": "all-linear"}))
JOB_MODEL = "smollm2-135m-instruct"


def measure_job(dataset: str, lora: dict, max_steps: int | None = None) -> dict:
    """Submit a dataset's default job and run it through the worker on a scratch database; return the job row's figures.

    The job is queued by app.jobs.service.create_job (the submission-time prediction), claimed and run by
    app.jobs.worker.JobRun with the worker's trainer (which re-predicts from the run's widest micro-batch), and
    read back as the job page reads it.
    """
    import tempfile
    import threading
    from pathlib import Path

    from sqlmodel import Session

    from app.calc import load_catalogue
    from app.jobs import queue
    from app.jobs.db import make_engine, init_db
    from app.jobs.service import create_job, job_spec
    from app.jobs.predictions import predict as predict_job
    from app.jobs.tables import Job
    from app.jobs.worker import JobRun, make_worker_id
    from app.settings import get_settings
    from app.spec import JobCreate
    from app.training.run import run_training

    with tempfile.TemporaryDirectory() as scratch:
        settings = get_settings().model_copy(update={"database_url": f"sqlite:///{Path(scratch) / 'bench.db'}",
                                                     "var_dir": Path(scratch)})
        settings.adapters_dir.mkdir()
        catalogue = load_catalogue(settings.content_dir / "models")
        engine = make_engine(settings)
        init_db(engine)
        training = {} if max_steps is None else {"max_steps": max_steps}  # empty: the job form's defaults
        request = JobCreate(model=JOB_MODEL, dataset=dataset, lora=lora, training=training)
        with Session(engine) as session:
            job_id = create_job(session, settings, catalogue, request).id
        at_submission = predict_job(job_spec(settings, request), catalogue)["predicted_memory_bytes"]
        worker_id = make_worker_id()
        assert queue.claim_next_job(engine, worker_id, settings.lease_seconds) == job_id
        JobRun(engine, settings, job_id, worker_id, run_training, threading.Event()).execute()
        with Session(engine) as session:
            job = session.get(Job, job_id)
            figures = {"status": job.status.value, "error": job.error, "at_submission": at_submission,
                       "predicted": job.predicted_memory_bytes, "peak": job.peak_memory_bytes, "device": job.device,
                       "sequences": (job.prediction_basis or {}).get("sequences"), "training": job.config["training"]}
        engine.dispose()
    return figures


def jobs(datasets: list[str] | None, max_steps: int | None) -> list[float]:
    """Each dataset's default job through the worker: the job page's measured peak against its prediction."""
    from app.spec.training import JOB_DEFAULTS

    mib = 1024**2
    shown = {name: JOB_DEFAULTS[name] for name in ("per_device_train_batch_size", "max_seq_length", "max_steps")}
    print(f"\nDefault jobs ({JOB_MODEL}; JOB_DEFAULTS {shown}"
          f"{f', max_steps overridden to {max_steps}' if max_steps is not None else ''}), each submitted and run by the "
          "worker in a fresh process")
    header = (f"{'dataset, LoRA':>24} {'measured':>9} | {'at submission':>13} {'meas/pred':>9} | "
              f"{'job page':>9} {'meas/pred':>9} | widest micro-batch")
    print(header)
    print("-" * len(header))
    ratios = []
    for dataset, lora in JOBS:
        if datasets and dataset not in datasets:
            continue
        steps = [] if max_steps is None else ["--job-max-steps", str(max_steps)]
        output = subprocess.run([sys.executable, __file__, "--measure-job", dataset, "--job-lora", json.dumps(lora), *steps],
                                capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        job = json.loads(output)
        label = f"{dataset}, {'r=16 all-linear' if lora else 'defaults'}"
        if job["status"] != "succeeded" or not job["peak"]:
            print(f"{label:>24} {job['status']}: {job['error']}", flush=True)
            continue
        peak, before, after = job["peak"], job["at_submission"], job["predicted"]
        ratios.append(peak / after)
        print(f"{label:>24} {peak / mib:>5,.0f} MiB | {before / mib:>9,.0f} MiB {peak / before:>9.2f} | "
              f"{after / mib:>5,.0f} MiB {peak / after:>9.2f} | {job['sequences']}", flush=True)
    return ratios


def predict(model_id: str, batch: int, seq: int, checkpointing: bool, dtype: str, device: str) -> tuple[int, int]:
    """The calculator's total estimate, and the part of it the measured 'added' figure covers."""
    from app.calc import compute
    from app.calc.memory import CPU_PROCESS_BYTES

    result = compute({
        "model": model_id,
        "lora": LORA,
        "training": {"per_device_train_batch_size": batch, "gradient_accumulation_steps": 1, "max_seq_length": seq,
                     "gradient_checkpointing": checkpointing, "base_dtype": {"float32": "fp32", "bfloat16": "bf16"}[dtype],
                     "optim": "adamw_torch", "devices": 1},
    })
    if device == "cpu":  # glibc's retained heap is part of RSS; the process's own resident set is the baseline
        return result.memory.total_bytes, result.memory.total_bytes - CPU_PROCESS_BYTES
    return result.memory.total_bytes, result.memory.allocated_bytes  # max_memory_allocated is the allocated basis


def main() -> None:
    """Measure every shape in its own process and print predicted against measured."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", choices=("jobs", "shapes"))
    parser.add_argument("--measure", nargs=3, type=int, metavar=("BATCH", "SEQ", "CHECKPOINTING"), help=argparse.SUPPRESS)
    parser.add_argument("--measure-job", help=argparse.SUPPRESS)
    parser.add_argument("--job-lora", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--datasets", nargs="+", help="only these datasets' jobs (default: all three and the all-linear job)")
    parser.add_argument("--job-max-steps", type=int, help="override the jobs' max_steps (default: JOB_DEFAULTS'; printed)")
    args = parser.parse_args()
    if args.measure_job:
        print(json.dumps(measure_job(args.measure_job, json.loads(args.job_lora), args.job_max_steps)))
        return
    if args.measure:  # a child measuring one shape: nothing else
        batch, seq, checkpointing = args.measure
        print(json.dumps(measure(args.model, batch, seq, bool(checkpointing), args.steps)))
        return
    if args.only != "shapes":
        ratios = jobs(args.datasets, args.job_max_steps)
        print(f"job page measured/predicted from the data: {', '.join(f'{r:.2f}' for r in ratios)} (target 0.85-1.15)")
        if args.only == "jobs":
            return

    mib = 1024**2
    print(f"{args.model}, LoRA {LORA}, AdamW, {args.steps} steps per shape, each in a fresh process")
    header = (f"{'batch':>5} {'seq':>5} {'ckpt':>5} | {'measured':>9} {'predicted':>9} {'meas/pred':>9} {'error':>6} | "
              f"{'added':>9} {'predicted':>9} {'meas/pred':>9} {'error':>6}")
    print(f"{'':>17} | {'total (peak)':^37} | {'added by training':^37}")
    print(header)
    print("-" * len(header))
    errors_total, errors_added = [], []
    for batch, seq, checkpointing in SHAPES:
        output = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--steps", str(args.steps), "--measure",
             str(batch), str(seq), str(int(checkpointing))],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        measured = json.loads(output)
        total, predicted_added = predict(args.model, batch, seq, checkpointing, measured["dtype"], measured["device"])
        peak = measured["peak"]
        added = peak - measured["baseline"] if measured["device"] == "cpu" else peak
        error_total = (total - peak) / peak
        error_added = (predicted_added - added) / added
        errors_total.append(error_total)
        errors_added.append(error_added)
        print(f"{batch:>5} {seq:>5} {'yes' if checkpointing else 'no':>5} | "
              f"{peak / mib:>5,.0f} MiB {total / mib:>5,.0f} MiB {peak / total:>9.2f} {error_total:>+6.0%} | "
              f"{added / mib:>5,.0f} MiB {predicted_added / mib:>5,.0f} MiB {added / predicted_added:>9.2f} {error_added:>+6.0%}")
    mean_total = sum(abs(error) for error in errors_total) / len(errors_total)
    mean_added = sum(abs(error) for error in errors_added) / len(errors_added)
    worst = max(errors_total, key=abs)
    print(f"\nmean absolute error: total {mean_total:.0%} (worst {worst:+.0%}), added {mean_added:.0%} "
          f"(device {measured['device']}, {measured['dtype']})")

if __name__ == "__main__":
    main()
