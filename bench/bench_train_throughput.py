"""Throughput of the worker's training loop, side by side with a bare peft + torch loop and HF Trainer.

Every contender trains the same LoRA model with the same optimizer on exactly the same rows in the
same order: the worker loop runs first and records its micro-batches; the bare loop replays them and
Trainer reads the same rows with a sequential sampler. The figure is real (non-padding) tokens per
second, the median over measured optimizer steps, each step timed from the end of the previous one.
Contenders run in alternating rounds so that machine noise hits them alike.

    .venv/bin/python bench/bench_train_throughput.py [--model smollm2-135m-instruct] [--steps 4] [--rounds 4] [--threads N]

Prints ratios: worker / bare (target >= 0.95), worker / Trainer (target >= 1.0), and the worker with
packing against Trainer and against itself without packing, on the same short examples.
"""

from __future__ import annotations

from app.settings import get_settings  # noqa: I001 -- first: OMP_WAIT_POLICY must be set before torch loads OpenMP

get_settings().apply_worker_environment()

import argparse
import dataclasses
import logging
import statistics
import tempfile
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments

from app.content.datasets import load_dataset
from app.settings import get_settings
from app.training.data import Batch, optimizer_steps, pack_examples, tokenize_rows
from app.training.loop import train_loop
from app.training.loading import load_model
from app.training.optim import build_optimizer
from app.spec import TrainingSpec

StepTimes = list[tuple[int, float]]  # (real tokens, seconds) per optimizer step


def run_worker_loop(model, rows, config: TrainingSpec, steps: int, pad_id: int) -> tuple[StepTimes, list[list[Batch]]]:
    """Step times of app.training.loop.train_loop, and the micro-batches it trained on."""
    stream = optimizer_steps(rows, config.per_device_train_batch_size, config.gradient_accumulation_steps, config.seed, pad_id)
    seen: list[list[Batch]] = []
    ends = [time.perf_counter()]

    def recording(batches):
        for micro_batches in batches:
            seen.append(micro_batches)
            yield micro_batches

    train_loop(model, recording(stream), config, steps, torch.device("cpu"), lambda: {},
               lambda _metric: ends.append(time.perf_counter()), lambda: False)
    tokens = [sum(batch.token_count for batch in micro_batches) for micro_batches in seen]
    return list(zip(tokens, [end - start for start, end in zip(ends, ends[1:])])), seen


def run_bare_loop(model, recorded: list[list[Batch]], config: TrainingSpec) -> StepTimes:
    """Step times of the plainest peft + torch loop on the recorded batches: the model's own mean loss."""
    optimizer = build_optimizer(model, config)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    model.train()
    times, last = [], time.perf_counter()
    for micro_batches in recorded:
        for batch in micro_batches:
            loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
            (loss / len(micro_batches)).backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        times.append((sum(batch.token_count for batch in micro_batches), now - last))
        last = now
    return times


class StepClock(TrainerCallback):
    """Wall time at the start of training and at the end of every Trainer step."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def run_trainer(model, recorded: list[list[Batch]], config: TrainingSpec) -> StepTimes:
    """Step times of transformers' Trainer reading the recorded rows in order, padded per batch by its collator."""
    features = []
    for micro_batches in recorded:
        for batch in micro_batches:
            for row in range(batch.input_ids.shape[0]):
                length = int(batch.attention_mask[row].sum())
                features.append({"input_ids": batch.input_ids[row, :length], "labels": batch.labels[row, :length]})

    def pad_right(rows):
        """Right padding, as the recorded batches have it."""
        width = max(len(row["input_ids"]) for row in rows)
        input_ids = torch.stack([torch.nn.functional.pad(row["input_ids"], (0, width - len(row["input_ids"])), value=0) for row in rows])
        labels = torch.stack([torch.nn.functional.pad(row["labels"], (0, width - len(row["labels"])), value=-100) for row in rows])
        attention_mask = torch.stack([(torch.arange(width) < len(row["input_ids"])).long() for row in rows])
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}

    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, max_steps=len(recorded), per_device_train_batch_size=config.per_device_train_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
            optim=config.optim, lr_scheduler_type="constant", max_grad_norm=config.max_grad_norm, report_to=[],
            save_strategy="no", logging_strategy="no", seed=config.seed, remove_unused_columns=False,
            dataloader_num_workers=0, use_cpu=True, disable_tqdm=True, train_sampling_strategy="sequential",
        )
        clock = StepClock()
        Trainer(model=model, args=args, train_dataset=features, data_collator=pad_right, callbacks=[clock]).train()
    tokens = [sum(batch.token_count for batch in micro_batches) for micro_batches in recorded]
    return list(zip(tokens, [end - start for start, end in zip(clock.ends, clock.ends[1:])]))


def median_speed(times: StepTimes) -> float:
    """Median real tokens per second over steps."""
    return statistics.median(tokens / seconds for tokens, seconds in times)


def main() -> None:
    """Measure every contender in alternating rounds and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dataset", default="telegram-style")
    parser.add_argument("--steps", type=int, default=4, help="measured steps per contender per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    torch.set_num_threads(args.threads)

    settings = get_settings()
    loaded = load_model(args.model, settings, seed=0)
    pad_id = loaded.tokenizer.pad_token_id
    examples = tokenize_rows(load_dataset(args.dataset, settings.content_dir).train, loaded.tokenizer, 512)
    config = TrainingSpec(learning_rate=1e-4, per_device_train_batch_size=args.batch, optim="adamw_torch",
                            lr_scheduler_type="constant", max_seq_length=512, seed=0)
    # Packed rows of 256 tokens, a quarter as many per batch: about the same examples per step as without packing,
    # and rows short enough that attention over a whole row stays cheap.
    packed_config = dataclasses.replace(config, packing=True, max_seq_length=256,
                                        per_device_train_batch_size=max(1, args.batch // 4))
    torch.manual_seed(0)
    model = get_peft_model(loaded.model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    unpacked = pack_examples(examples, 512, packing=False)
    packed = pack_examples(examples, packed_config.max_seq_length, packing=True)
    lengths = [len(example.input_ids) for example in examples]
    print(f"{args.model} on {args.dataset}: {len(examples)} examples of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}); batch {args.batch}; packing: {len(packed)} rows of <= "
          f"{packed_config.max_seq_length}, "
          f"batch {packed_config.per_device_train_batch_size}; LoRA r=16 all-linear; AdamW; "
          f"{torch.get_num_threads()} CPU threads")

    warmup = 1  # the first step of each run pays one-off costs (allocations, kernel selection)
    results: dict[str, StepTimes] = {"worker": [], "bare": [], "trainer": [], "packed": []}
    for round_index in range(args.rounds):
        worker_times, recorded = run_worker_loop(model, unpacked, config, args.steps + warmup, pad_id)
        results["worker"] += worker_times[warmup:]
        results["bare"] += run_bare_loop(model, recorded, config)[warmup:]
        results["trainer"] += run_trainer(model, recorded, config)[warmup:]
        results["packed"] += run_worker_loop(model, packed, packed_config, args.steps + warmup, pad_id)[0][warmup:]
        print(f"round {round_index + 1}: " + ", ".join(f"{name} {median_speed(times):,.0f}" for name, times in results.items())
              + " tokens/s so far")

    speed = {name: median_speed(times) for name, times in results.items()}
    labels = {"worker": "worker loop (app.training.loop)", "bare": "bare peft + torch loop", "trainer": "HF Trainer",
              "packed": "worker loop, packing on"}
    print(f"\n{'contender':<34}{'real tokens/s (median)':>24}{'steps':>7}")
    for name, label in labels.items():
        print(f"{label:<34}{speed[name]:>24,.0f}{len(results[name]):>7}")
    print(f"\nworker / bare    = {speed['worker'] / speed['bare']:.2f}x   (target >= 0.95)")
    print(f"worker / Trainer = {speed['worker'] / speed['trainer']:.2f}x   (target >= 1.0)")
    print(f"packed / Trainer = {speed['packed'] / speed['trainer']:.2f}x   (packing on short examples)")
    print(f"packed / worker  = {speed['packed'] / speed['worker']:.2f}x")


if __name__ == "__main__":
    main()
