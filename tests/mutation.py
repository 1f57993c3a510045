"""Mutation testing with cosmic-ray: each module that carries a promise, mutated against the fast tests that cover it.

Run by `make mutation` (or `python -m tests.mutation [target ...]`). The tree is copied to a scratch folder first,
so the working tree is never left mutated. Prints the score of each module and writes every survivor's diff to
test-artifacts/mutation/<target>.txt; tests/MUTATION.md triages the survivors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("mutation")
ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "test-artifacts" / "mutation"
SAMPLE_SEED = 14

# One sensible variant per operator (as mutmut does) instead of every operator swapped for every other:
# cosmic-ray's full cross product is 7 mutants per `==`, mostly duplicates of each other.
KEPT_OPERATOR = re.compile(
    r"core/(NumberReplacer|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|ExceptionReplacer|ZeroIterationForLoop|ReplaceBreakWithContinue|ReplaceContinueWithBreak|RemoveDecorator"
    r"|ReplaceUnaryOperator_.*"
    r"|ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Is_IsNot|IsNot_Is|In_NotIn|NotIn_In)"
    r"|ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Div|Mod_FloorDiv|Pow_Mul|BitOr_BitAnd|BitAnd_BitOr|LShift_RShift|RShift_LShift))$"
)


@dataclass(frozen=True)
class Target:
    """A module and the tests that cover it, fast enough to run once per mutant."""

    name: str
    module: str
    tests: str
    timeout: float = 120
    functions: tuple[str, ...] = ()  # mutate only these functions (all of the module when empty)


TARGETS = [
    Target("queue", "app/jobs/queue.py",
           "tests/jobs/test_queue.py tests/jobs/test_worker_loop.py tests/jobs/test_heartbeat.py tests/web/test_jobs_api.py "
           "tests/jobs/test_postgres.py -k 'test_queue.py or test_worker_loop.py or test_heartbeat.py or lease or cancelling "
           "or full_queue or concurrent or adapter_is_404 or skips'"),
    Target("adapter_file", "app/calc/adapter_file.py", "tests/calc/test_adapter_file.py"),
    Target("trainable", "app/calc/trainable.py",
           # one model per family shape: llama-like, Conv1D, fused qkv, biases, soft-capping, experts
           "tests/calc/test_trainable_edges.py tests/calc/test_trainable.py -k 'test_trainable_edges.py or (real_widths and "
           "(tiny-llama or gpt2 or phi-3-mini or qwen2.5-0.5b or gemma-2-2b or mixtral)) or mixtral_expert or published'"),
    Target("targets", "app/calc/targets.py", "tests/calc/test_targets.py tests/calc/test_trainable.py -k 'test_targets.py or real_widths or mixtral_expert'"),
    Target("worker", "app/jobs/worker.py", "tests/jobs/test_worker_loop.py tests/jobs/test_heartbeat.py",
           functions=("execute", "_heartbeat", "_should_stop", "_finish")),
    # signal handlers and the orphan watch only act in a worker process of its own (about 40 s per mutant)
    Target("worker_process", "app/jobs/worker.py",
           "tests/jobs/test_worker_process.py tests/jobs/test_postgres.py -k 'test_worker_process.py or password'", timeout=180,
           functions=("run_worker", "_stop_when_orphaned")),
    Target("sse", "app/web/sse.py", "tests/web/test_sse_resume.py tests/web/test_jobs_api.py tests/web/test_jobs_pages.py "
           "tests/web/test_streams_and_load.py -k 'test_sse_resume.py or (test_jobs_api.py and (stream or event or resume)) "
           "or same_curve or share_one'"),
    Target("memory", "app/calc/memory.py", "tests/calc/test_memory.py tests/calc/test_memory_terms.py tests/calc/test_memory_vs_torch.py"),
    Target("adapter_saving", "app/training/run.py", "tests/training/test_adapter_saving.py",
           functions=("save_adapter", "ensure_disk_space", "adapter_bytes")),
    Target("training_saving", "app/training/run.py", "tests/training/test_adapter_fidelity.py", timeout=300,
           functions=("_train",)),
]


def copy_tree(destination: Path) -> None:
    """Tracked and untracked-but-not-ignored files into destination; var/ (model cache) is linked, not copied."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if relative == "var" or relative.startswith("var/") or not source.is_file():
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if (ROOT / "var").exists():
        (destination / "var").symlink_to((ROOT / "var").resolve())


def kill_processes_in(tree: Path) -> None:
    """SIGKILL every process whose working directory is inside the scratch tree: what a mutant's test run started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).is_relative_to(tree):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            continue


def run_target(target: Target, tree: Path, python: str, budget: float | None,
               sample: int | None = None) -> tuple[int, int, int, list[str]]:
    """(killed, mutants judged, mutants left unrun, survivor diffs) for one target, within `budget` seconds if given;
    `sample` mutants drawn at random (seed SAMPLE_SEED) instead of all."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    command = f"{python} -m pytest -x -q -p no:cacheprovider --timeout={int(target.timeout)} {target.tests}"
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    baseline = subprocess.run(command, shell=True, cwd=tree, env=environment, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{target.name}: the unmutated tests fail, so no mutant can be judged:\n{baseline.stdout[-3000:]}")
    workdir = tree / ".mutation"
    workdir.mkdir(exist_ok=True)
    config, session = workdir / f"{target.name}.toml", workdir / f"{target.name}.sqlite"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {target.timeout * 2}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    cosmic_ray = str(Path(python).with_name("cosmic-ray"))
    subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=tree, env=environment, check=True,
                   capture_output=True)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            outside = target.functions and any(mutation.definition_name not in target.functions for mutation in item.mutations)
            if outside or not all(KEPT_OPERATOR.match(mutation.operator_name) for mutation in item.mutations):
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not selected"))
        # job ids are fresh uuids on every init: order by where each mutation is, so a seed draws the same sample
        selected = sorted(db.pending_work_items, key=lambda item: (item.mutations[0].start_pos, item.mutations[0].operator_name,
                                                                   item.mutations[0].occurrence))
        if sample is not None and sample < len(selected):
            chosen = {item.job_id for item in random.Random(SAMPLE_SEED).sample(selected, sample)}
            for item in selected:
                if item.job_id not in chosen:
                    db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not sampled"))
            logger.info("%s: %d of %d selected mutants sampled (seed %d)", target.name, sample, len(selected), SAMPLE_SEED)
        pending = db.num_work_items - db.num_results
    logger.info("%s: %d mutants of %s against: %s", target.name, pending, target.module, target.tests)
    started = time.monotonic()
    execution = subprocess.Popen([cosmic_ray, "exec", str(config), str(session)], cwd=tree, env=environment,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        execution.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(execution.pid, signal.SIGKILL)
        execution.wait()
        kill_processes_in(tree)  # the test run cosmic-ray started is in a session of its own
        shutil.copy2(ROOT / target.module, tree / target.module)  # it may have died with a mutant applied
        logger.info("%s: budget of %.0f s spent; scoring the mutants run so far", target.name, budget)
    if execution.returncode not in (0, -signal.SIGKILL):
        raise SystemExit(f"{target.name}: cosmic-ray exec failed with {execution.returncode}")
    killed, run, done, survivors = 0, 0, 0, []
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            done += 1
            if result.test_outcome == TestOutcome.INCOMPETENT:
                continue  # the mutant does not even import: no test can be credited with it
            run += 1
            if result.is_killed:
                killed += 1
            else:
                mutation = items[job_id].mutations[0]
                survivors.append(f"{mutation.operator_name} at line {mutation.start_pos[0]}\n{result.diff}")
    logger.info("%s: %d of %d killed in %.0f s", target.name, killed, run, time.monotonic() - started)
    return killed, run, pending - done, survivors


def main(argv: list[str] | None = None) -> int:
    """Run the named targets (all by default); print a score line per module."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"any of {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--budget-minutes", type=float, help="stop each target after this long and score what ran")
    parser.add_argument("--sample", type=int, help=f"run this many of each target's mutants, drawn with seed {SAMPLE_SEED}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unknown = set(args.targets) - {target.name for target in TARGETS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    chosen = [target for target in TARGETS if not args.targets or target.name in args.targets]
    REPORTS.mkdir(parents=True, exist_ok=True)
    lines = []
    with tempfile.TemporaryDirectory(prefix="lorapedia-mutation-") as scratch:
        tree = Path(scratch)
        copy_tree(tree)
        for target in chosen:
            budget = args.budget_minutes * 60 if args.budget_minutes else None
            killed, run, unrun, survivors = run_target(target, tree, sys.executable, budget, args.sample)
            (REPORTS / f"{target.name}.txt").write_text("\n\n".join(survivors) or "no survivors\n")
            score = 100 * killed / run if run else 100.0
            partial = f" (budget spent: {unrun} mutants not run)" if unrun else ""
            partial += f" (a random sample, seed {SAMPLE_SEED})" if args.sample else ""
            lines.append(f"{target.module}: {killed}/{run} mutants killed ({score:.0f}%), {len(survivors)} survived{partial}")
    print(f"mutation scores, {datetime.date.today().isoformat()}:")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
