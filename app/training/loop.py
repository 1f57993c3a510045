"""The training loop: exact gradient accumulation, clipping, schedule, metrics, eval and cancellation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from peft import PeftModel

from app.training.data import Batch
from app.training.loss import summed_loss
from app.training.optim import build_optimizer, build_scheduler
from app.spec.training import TrainingSpec


@dataclass
class LoopOutcome:
    """How the loop ended and the last losses it saw."""

    status: str  # "succeeded" | "cancelled"
    steps_completed: int
    final_train_loss: float | None
    final_eval_metrics: dict


def train_loop(model: PeftModel, steps: Iterator[list[Batch]], config: TrainingSpec, total_steps: int,
               device: torch.device, evaluate: Callable[[], dict], on_metric: Callable[[dict], None],
               should_stop: Callable[[], bool], compute: Callable[[], AbstractContextManager] = nullcontext) -> LoopOutcome:
    """Run total_steps optimizer steps; evaluate every config.eval_steps and after the last step.

    compute() is the context of each forward pass and loss (bf16 autocast on a CPU that has it); the backward
    pass, clipping and the optimizer run outside it, on fp32 gradients and weights.
    """
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    causal_lm = model.get_base_model()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf  # inf measures without clipping
    train_loss, eval_metrics = None, {}
    tokens_seen = 0
    model.train()
    started = time.perf_counter()
    for step in range(1, total_steps + 1):
        if should_stop():
            return LoopOutcome("cancelled", step - 1, train_loss, eval_metrics)
        step_started = time.perf_counter()
        micro_batches = next(steps)
        # One normaliser for the whole step: the target tokens of every micro-batch together. Each micro-batch's
        # summed loss divided by it adds up to the mean over the full batch, so k micro-batches of b rows
        # update exactly as one batch of k*b rows would.
        target_count = sum(batch.target_count for batch in micro_batches)
        step_loss = torch.zeros((), device=device)
        for batch in micro_batches:
            with compute():
                loss = summed_loss(causal_lm, batch.to(device)) / target_count
            loss.backward()
            step_loss += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        train_loss = step_loss.item()
        now = time.perf_counter()
        step_tokens = sum(batch.token_count for batch in micro_batches)
        tokens_seen += step_tokens
        metric = {
            "step": step,
            "train_loss": train_loss,
            "learning_rate": learning_rate,
            "grad_norm": grad_norm.item(),
            "tokens_per_second": step_tokens / (now - step_started),
            "elapsed_seconds": now - started,
            "tokens_seen": tokens_seen,
        }
        if step == total_steps or (config.eval_steps and step % config.eval_steps == 0):
            eval_metrics = evaluate()
            metric.update(eval_metrics)
        on_metric(metric)
    return LoopOutcome("succeeded", total_steps, train_loss, eval_metrics)
