"""CPU training precision: the worker's loop in fp32, under bf16 autocast, and with bf16 base weights, side by side.

The job is the job form's default (JobTrainingSpec's steps, batch and length, JobLoraSpec's LoRA) unless told otherwise.
A fourth contender, bf16-weights-autocast (bench only), also runs the fp32 LoRA layers under autocast, to see whether
the adapters' own matmuls are worth moving to bf16.

Each precision trains its own copy of SmolLM2 (same seed, same LoRA init, same batches in the same order) with
app.training.loop.train_loop. The runs take turns one optimizer step at a time (a baton passed at
should_stop, which the loop asks before every step), so load from other work on the machine hits them alike.

Prints, per precision: real tokens/s (median over steps after the first), the step's model FLOPs
utilisation against the measured matmul peak of the same dtype on the same threads, and how far its
loss curve is from fp32's (same seed, same batches).

    .venv/bin/python bench/bench_bf16_cpu.py [--steps 12] [--batch 4] [--seq 128] [--all-linear] [--tolerance 0.02]

Targets: bf16 (the worker's choice, bf16-weights) / fp32 >= 1.5x where the CPU has AVX512-BF16 or AMX; final train loss within
--tolerance (relative) of fp32's.
"""

from __future__ import annotations

from app.settings import get_settings  # noqa: I001 -- first: OMP_WAIT_POLICY must be set before torch loads OpenMP

get_settings().apply_worker_environment()

import argparse
import logging
import statistics
import threading
import time

import torch
from peft import LoraConfig, get_peft_model

from app.content.datasets import load_dataset
from app.spec import JobLoraSpec, JobTrainingSpec, TrainingSpec
from app.training.data import Batch, optimizer_steps, pack_examples, tokenize_rows
from app.training.loading import cpu_has_bf16, load_model
from app.training.loop import train_loop

logger = logging.getLogger("bench_bf16_cpu")
PRECISIONS = ("fp32", "bf16-weights", "bf16-autocast", "bf16-weights-autocast")
MATMUL_SIZE = 2048


def matmul_peak(dtype: torch.dtype, rounds: int = 5) -> float:
    """Best FLOP/s of a square matmul in dtype on the current threads: the peak a step's MFU is measured against."""
    left = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    right = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    torch.mm(left, right)  # first call selects kernels
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        torch.mm(left, right)
        best = max(best, 2 * MATMUL_SIZE**3 / (time.perf_counter() - started))
    return best


def step_flops(model: torch.nn.Module, micro_batches: list[Batch]) -> float:
    """Model FLOPs of one LoRA step: frozen linears forward + input-gradient (4 per weight per token), LoRA
    weights forward + both gradients (6), the head on target tokens only (4), causal attention (3 x 2 x 2 x ctx x d)."""
    config = model.get_base_model().config
    frozen, adapter = 0, 0
    for name, parameter in model.named_parameters():
        if parameter.ndim != 2 or "embed_tokens" in name or "lm_head" in name:
            continue
        if parameter.requires_grad:
            adapter += parameter.numel()
        else:
            frozen += parameter.numel()
    total = 0.0
    for batch in micro_batches:
        rows, width = batch.input_ids.shape
        tokens = rows * width  # padded positions are computed too
        attention = 3 * 2 * 2 * (width / 2) * config.hidden_size * config.num_hidden_layers * tokens
        head = 4 * config.vocab_size * config.hidden_size * batch.target_count
        total += 4 * frozen * tokens + 6 * adapter * tokens + head + attention
    return total


class Baton:
    """Lets one run at a time take an optimizer step, in a fixed rotation."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.turn = 0
        self.finished: set[str] = set()
        self.condition = threading.Condition()

    def wait_turn(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.names[self.turn] == name)

    def pass_on(self) -> None:
        with self.condition:
            for _ in self.names:
                self.turn = (self.turn + 1) % len(self.names)
                if self.names[self.turn] not in self.finished:
                    break
            self.condition.notify_all()

    def finish(self, name: str) -> None:
        with self.condition:
            self.finished.add(name)
        self.pass_on()


def main() -> None:
    """Train the three precisions in turns and print speed, MFU and loss agreement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dataset", default="lora-qa")
    job = JobTrainingSpec()
    parser.add_argument("--steps", type=int, default=job.max_steps)
    parser.add_argument("--batch", type=int, default=job.per_device_train_batch_size)
    parser.add_argument("--seq", type=int, default=job.max_seq_length)
    parser.add_argument("--all-linear", action="store_true", help="LoRA r=16, alpha 32 on every linear layer instead of the job form's")
    parser.add_argument("--tolerance", type=float, default=0.02, help="relative difference of final train loss allowed")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    logging.getLogger().setLevel("WARNING")
    logger.setLevel("INFO")

    base_settings = get_settings()
    config = TrainingSpec(learning_rate=2e-4, per_device_train_batch_size=args.batch, optim="adamw_torch",
                          lr_scheduler_type="constant", max_seq_length=args.seq, seed=0)
    lora = dict(r=16, lora_alpha=32, target_modules="all-linear") if args.all_linear else JobLoraSpec().to_peft_kwargs()
    runs = {}
    for precision in PRECISIONS:
        setting = precision.removesuffix("-autocast") if precision == "bf16-weights-autocast" else precision
        loaded = load_model(args.model, base_settings.model_copy(update={"cpu_precision": setting}), seed=0)
        if precision == "bf16-weights-autocast":
            loaded.autocast_dtype = torch.bfloat16  # bf16 base weights, and the LoRA layers' matmuls under autocast too
        torch.manual_seed(0)
        model = get_peft_model(loaded.model, LoraConfig(**lora, task_type="CAUSAL_LM"))
        examples = tokenize_rows(load_dataset(args.dataset, base_settings.content_dir).train, loaded.tokenizer, args.seq)
        runs[precision] = {"loaded": loaded, "model": model, "rows": pack_examples(examples, args.seq, packing=False),
                           "metrics": [], "batches": []}
    adapter = runs["fp32"]["model"].peft_config["default"]
    print(f"{args.model} on {args.dataset}: LoRA r={adapter.r} alpha={adapter.lora_alpha} on {sorted(adapter.target_modules)}, batch {args.batch}, <= {args.seq} tokens, "
          f"{args.steps} steps each; {torch.get_num_threads()} CPU threads; AVX512-BF16/AMX: {cpu_has_bf16()}; "
          f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}")

    peaks = {torch.float32: matmul_peak(torch.float32), torch.bfloat16: matmul_peak(torch.bfloat16)}
    print(f"matmul peak ({MATMUL_SIZE}^3, best of 5): fp32 {peaks[torch.float32] / 1e9:,.0f} GFLOP/s, "
          f"bf16 {peaks[torch.bfloat16] / 1e9:,.0f} GFLOP/s")

    baton = Baton(PRECISIONS)

    def train(name: str) -> None:
        run = runs[name]
        loaded = run["loaded"]
        stream = optimizer_steps(run["rows"], args.batch, 1, config.seed, loaded.tokenizer.pad_token_id)

        def recording():
            for micro_batches in stream:
                run["batches"].append(micro_batches)
                yield micro_batches

        def should_stop() -> bool:
            if run["metrics"]:
                baton.pass_on()
            baton.wait_turn(name)
            return False

        def report(metric: dict) -> None:
            run["metrics"].append(metric)
            logger.info("%s step %d: %.0f tokens/s, loss %.4f", name, metric["step"], metric["tokens_per_second"],
                         metric["train_loss"])

        try:
            train_loop(run["model"], recording(), config, args.steps, loaded.device, lambda: {},
                       report, should_stop, loaded.compute)
        finally:
            baton.finish(name)

    threads = [threading.Thread(target=train, args=(name,)) for name in PRECISIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    fp32_losses = [metric["train_loss"] for metric in runs["fp32"]["metrics"]]
    speeds = {}
    print(f"\n{'precision':<22}{'label':<34}{'tokens/s':>10}{'GFLOP/s':>10}{'MFU':>8}"
          f"{'final loss':>12}{'rel. diff':>11}{'max rel. diff':>15}")
    for name, run in runs.items():
        measured = run["metrics"][1:]  # the first step pays one-off costs
        speeds[name] = statistics.median(metric["tokens_per_second"] for metric in measured)
        flops = statistics.median(step_flops(run["model"], batches) * metric["tokens_per_second"]
                                  / sum(batch.token_count for batch in batches)
                                  for metric, batches in zip(measured, run["batches"][1:]))
        compute_dtype = run["loaded"].autocast_dtype or run["loaded"].dtype
        losses = [metric["train_loss"] for metric in run["metrics"]]
        differences = [abs(loss - reference) / reference for loss, reference in zip(losses, fp32_losses)]
        print(f"{name:<22}{run['loaded'].device_label:<34}{speeds[name]:>10,.0f}{flops / 1e9:>10,.1f}"
              f"{flops / peaks[compute_dtype]:>8.1%}{losses[-1]:>12.4f}{differences[-1]:>11.2%}{max(differences):>15.2%}")

    for name in PRECISIONS[1:]:
        final = abs(runs[name]["metrics"][-1]["train_loss"] - fp32_losses[-1]) / fp32_losses[-1]
        verdict = "within" if final <= args.tolerance else "OUTSIDE"
        # each round's steps ran back to back, so a round's ratio sees about the same load from other work
        paired = statistics.median(mine["tokens_per_second"] / reference["tokens_per_second"]
                                   for mine, reference in zip(runs[name]["metrics"][1:], runs["fp32"]["metrics"][1:]))
        print(f"{name} / fp32 = {speeds[name] / speeds['fp32']:.2f}x tokens/s, median of the rounds' ratios {paired:.2f}x "
              "(target >= 1.5x); "
              f"final loss {verdict} {args.tolerance:.0%} of fp32's ({final:.2%})")


if __name__ == "__main__":
    main()
