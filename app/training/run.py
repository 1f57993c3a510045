"""run_training: one job from its JobSpec to a saved adapter and a RunResult. The contract the worker codes against."""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import set_seed

from app.content.datasets import load_dataset
from app.settings import Settings
from app.spec import FieldError, JobSpec, RunResult, TrainingSpec
from app.training.data import eval_batches, optimizer_steps, pack_examples, peak_micro_batch, tokenize_rows
from app.training.loop import train_loop
from app.training.loss import PLAIN_HEAD_MODEL_TYPES, summed_loss
from app.training.memory import PeakMemory
from app.training.loading import LoadedModel, load_model, pick_device
from app.training.sampling import exact_match, sample_rows

logger = logging.getLogger(__name__)

SAMPLE_COUNT = 3
SAMPLE_MAX_NEW_TOKENS = 48  # length of the before/after answers
SMALL_MODEL_PARAMS = 10_000_000  # below this a CPU run uses one thread (see _cpu_threads_for)
EXACT_MATCH_ROWS = 25  # held-out rows scored per eval: generating answers is the dearest part of an eval on CPU


def run_training(spec: JobSpec, settings: Settings, output_dir: Path, on_metric: Callable[[dict], None],
                 should_stop: Callable[[], bool], on_event: Callable[[str, dict], None] | None = None) -> RunResult:
    """Train a LoRA adapter as spec says, report every optimizer step, save the adapter under output_dir.

    See app/training/__init__.py for the callbacks; bad input raises FieldError naming the field.
    """
    config = spec.training
    settings.instance_limits().check(config)
    train_rows, held_out_rows, task = _resolve_rows(spec, settings, config.seed)
    lora_config = _lora_config(spec.lora.to_peft_kwargs())
    set_seed(config.seed)
    memory = PeakMemory(pick_device()[0])
    baseline_bytes = memory.start()
    phases = PhaseClock()
    with phases("load"):
        loaded = load_model(spec.model, settings, seed=config.seed)
    with _cpu_threads_for(loaded):
        result = _train(loaded, config, lora_config, spec, train_rows, held_out_rows, task, settings, output_dir,
                        memory, phases, on_metric, should_stop, on_event)
    logger.info("%s phases: %s", spec.model, ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.seconds.items()))
    return RunResult(**result, peak_memory_bytes=memory.peak_bytes(), baseline_memory_bytes=baseline_bytes,
                     phase_seconds=phases.rounded())


class PhaseClock:
    """Wall seconds spent in each named phase of a run, summed over its repeats (every eval adds to "eval")."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        """The phases to a tenth of a second, as RunResult carries them."""
        return {name: round(seconds, 1) for name, seconds in self.seconds.items()}


def _train(loaded: LoadedModel, config: TrainingSpec, lora_config: LoraConfig, spec: JobSpec, train_rows: list[dict],
           held_out_rows: list[dict], task: str | None, settings: Settings, output_dir: Path, memory: PeakMemory,
           phases: PhaseClock, on_metric: Callable[[dict], None], should_stop: Callable[[], bool],
           on_event: Callable[[str, dict], None] | None) -> dict:
    """Tokenise, sample before, wrap with LoRA, run the loop, save, sample after."""
    tokenizer = loaded.tokenizer
    with phases("tokenise"):
        train_examples = tokenize_rows(train_rows, tokenizer, config.max_seq_length)
        if not train_examples:
            raise FieldError(("training", "max_seq_length"), "no training row keeps a response token within this length")
        packed = pack_examples(train_examples, config.max_seq_length, config.packing)
        total_steps = settings.instance_limits().check(config, len(packed))
        held_out = eval_batches([[example] for example in tokenize_rows(held_out_rows, tokenizer, config.max_seq_length)],
                                config.per_device_train_batch_size, tokenizer.pad_token_id)
    sample_source = (held_out_rows or train_rows)[:SAMPLE_COUNT]
    # Answering the "before" prompts takes seconds on CPU; when the untrained adapter is an exact no-op,
    # the same answers come from the adapter disabled after training, so the first step starts sooner.
    defer_samples_before = _starts_as_identity(lora_config)
    samples_before = []
    if not defer_samples_before:
        with phases("samples"), loaded.compute():
            samples_before = sample_rows(loaded.model, tokenizer, sample_source, SAMPLE_MAX_NEW_TOKENS, loaded.device)

    torch.manual_seed(config.seed)  # LoRA's A matrices are initialised at random
    with phases("wrap"):
        model = _wrap(loaded, lora_config, config)
    trainable_params, total_params = model.get_nb_trainable_parameters()
    # fail before training, not after it, when the adapter could not be saved
    ensure_disk_space(Path(output_dir), adapter_bytes(model), settings.min_free_disk_bytes)
    if on_event:
        peak = peak_micro_batch(packed, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                                config.seed, total_steps)
        # the loss projects only target positions for plain heads (loss.summed_loss), else every position but the last
        projected = loaded.model.config.model_type in PLAIN_HEAD_MODEL_TYPES
        started = {"device": loaded.device_label, "total_steps": total_steps, "trainable_params": trainable_params,
                   "total_params": total_params,
                   "batch_shape": {"rows": peak.rows, "width": peak.width,
                                   "loss_tokens": peak.most_targets if projected else peak.rows * (peak.width - 1)}}
        on_event("started", started if defer_samples_before else {**started, "samples_before": samples_before})
    logger.info("training %s on %s: %d steps, %d trainable of %d parameters",
                spec.model, loaded.device_label, total_steps, trainable_params, total_params)

    def evaluate() -> dict:
        """Eval loss over the held-out split, and exact match for the synthetic task."""
        if not held_out:
            return {}
        model.eval()
        with phases("eval"), torch.no_grad(), loaded.compute():
            loss_sum = sum(summed_loss(model.get_base_model(), batch.to(loaded.device)).item() for batch in held_out)
            metrics = {"eval_loss": loss_sum / sum(batch.target_count for batch in held_out)}
            if task == "exact_match":
                metrics["exact_match"] = exact_match(model, tokenizer, held_out_rows[:EXACT_MATCH_ROWS], loaded.device)
        model.train()
        return metrics

    rows_per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps

    def report(metric: dict) -> None:
        """Pass the step's metrics on, with the epoch; sample memory where the kernel keeps no resettable peak."""
        memory.sample()
        on_metric({**metric, "epoch": metric["step"] * rows_per_step / len(packed)})

    steps = optimizer_steps(packed, config.per_device_train_batch_size, config.gradient_accumulation_steps,
                            config.seed, tokenizer.pad_token_id)
    with phases("train"):  # the steps and their evals; "eval" alone is also counted apart
        outcome = train_loop(model, steps, config, total_steps, loaded.device, evaluate, report, should_stop, loaded.compute)
    with phases("save"):
        adapter_dir = save_adapter(model, Path(output_dir) / "adapter", settings.min_free_disk_bytes)
    samples_after = []
    if outcome.status == "succeeded":
        with phases("samples"), loaded.compute():
            samples_after = sample_rows(model, tokenizer, sample_source, SAMPLE_MAX_NEW_TOKENS, loaded.device)
        if defer_samples_before:
            with phases("samples"), model.disable_adapter(), loaded.compute():
                samples_before = sample_rows(model, tokenizer, sample_source, SAMPLE_MAX_NEW_TOKENS, loaded.device)
    return {
        "status": outcome.status,
        "device": loaded.device_label,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "samples_before": samples_before,
        "samples_after": samples_after,
        "adapter_dir": str(adapter_dir),
        "total_steps": total_steps,
        "steps_completed": outcome.steps_completed,
        "final_train_loss": outcome.final_train_loss,
        "final_eval_loss": outcome.final_eval_metrics.get("eval_loss"),
        "final_exact_match": outcome.final_eval_metrics.get("exact_match"),
    }


class DiskSpaceError(OSError):
    """Too little free disk for the adapter: the job fails saying so, before it trains when that can be known."""


def adapter_bytes(model: PeftModel) -> int:
    """What the saved adapter will take: its trainable tensors at their own element size (safetensors adds a small header)."""
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters() if parameter.requires_grad)


def ensure_disk_space(directory: Path, needed: int, reserve: int) -> None:
    """Raise DiskSpaceError unless `needed` bytes fit on directory's file system with `reserve` bytes left over."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed + reserve:
        raise DiskSpaceError(f"not enough disk space to save the adapter under {directory}: it needs {needed:,} bytes and "
                             f"{reserve:,} must stay free (min_free_disk_bytes), but only {free:,} bytes are free")


def save_adapter(model: PeftModel, adapter_dir: Path, reserve: int) -> Path:
    """Save the adapter after checking the space for it; a failed save leaves no partial files behind."""
    ensure_disk_space(adapter_dir.parent, adapter_bytes(model), reserve)
    try:
        model.save_pretrained(adapter_dir)
    except OSError as error:
        shutil.rmtree(adapter_dir, ignore_errors=True)
        raise DiskSpaceError(f"saving the adapter failed and its partial files were removed: {error}") from error
    return adapter_dir


@contextmanager
def _cpu_threads_for(loaded: LoadedModel) -> Iterator[None]:
    """One CPU thread for a small model, restored afterwards.

    A few-million-parameter model's matrices are too small for a second thread to pay off, and on a
    machine busy with other work OpenMP's threads wait on each other: tiny-llama ran 10x slower with
    2 threads than with 1 on a loaded 2-core machine.
    """
    previous = torch.get_num_threads()
    small = loaded.device.type == "cpu" and sum(p.numel() for p in loaded.model.parameters()) < SMALL_MODEL_PARAMS
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resolve_rows(spec: JobSpec, settings: Settings, seed: int) -> tuple[list[dict], list[dict], str | None]:
    """Train rows, held-out rows and task kind, from a catalogue dataset or pasted rows."""
    if spec.dataset_rows is None:
        dataset = load_dataset(spec.dataset, settings.content_dir)
        return dataset.train, dataset.eval, dataset.info.task
    rows = spec.dataset_rows
    if not rows:
        raise FieldError(("dataset_jsonl",), "holds no rows")
    if len(rows) < 10:
        return rows, [], None  # too few rows to spare any for evaluation
    # Hold out a tenth, chosen by the job's seed, so the same job always evaluates on the same rows.
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[: len(rows) // 10])
    return ([row for index, row in enumerate(rows) if index not in held],
            [row for index, row in enumerate(rows) if index in held], None)


def _starts_as_identity(lora_config: LoraConfig) -> bool:
    """True when the wrapped, untrained model computes exactly what the base model does.

    B starts at zero for the default and Gaussian inits, so the adapter adds nothing; other inits
    (PiSSA, OLoRA, False, ...) or training biases, saved modules or tokens change the model itself.
    """
    return (
        lora_config.init_lora_weights in (True, "gaussian")
        and lora_config.bias == "none"
        and not lora_config.lora_bias
        and not lora_config.modules_to_save
        and not getattr(lora_config, "trainable_token_indices", None)
    )


def _lora_config(fields: dict) -> LoraConfig:
    """A peft LoraConfig for a causal LM, or FieldError carrying peft's own reason."""
    try:
        return LoraConfig(**{"task_type": "CAUSAL_LM", **fields})
    except TypeError as error:
        raise FieldError(("lora",), f"unknown LoraConfig field ({error})") from error
    except ValueError as error:
        raise FieldError(("lora",), str(error)) from error
    except ImportError as error:  # e.g. init_lora_weights="loftq" without scipy or bitsandbytes
        raise FieldError(("lora", "init_lora_weights"), f"needs a package this install lacks ({error})") from error


def _wrap(loaded: LoadedModel, lora_config: LoraConfig, config: TrainingSpec) -> PeftModel:
    """The base model with LoRA layers injected, and activation checkpointing when asked for."""
    try:
        model = get_peft_model(loaded.model, lora_config)
    except ValueError as error:
        raise FieldError(("lora",), str(error)) from error
    except ImportError as error:
        raise FieldError(("lora",), f"needs a package this install lacks ({error})") from error
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs, so no input-grad hook is needed.
        model.get_base_model().activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model
