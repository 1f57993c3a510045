"""Tokenising chat rows with the loss on response tokens only, packing, and batching for exact accumulation."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from app.content.chat_tokens import chat_segments

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value torch's cross_entropy skips: prompt tokens and padding


@dataclass(frozen=True)
class Example:
    """One tokenised row: input ids and labels (IGNORE_INDEX wherever no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def target_count(self) -> int:
        """Tokens the loss covers."""
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass
class Batch:
    """Padded tensors for one micro-batch; position ids restart at 0 for every packed example."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor  # 1 on real tokens; the loop itself needs none (padding is on the right)
    token_count: int  # real (non-padding) tokens
    target_count: int  # tokens whose next-token prediction is in the loss

    def to(self, device: torch.device) -> Batch:
        """The same batch on device."""
        return Batch(self.input_ids.to(device), self.labels.to(device), self.position_ids.to(device),
                     self.attention_mask.to(device), self.token_count, self.target_count)


def render_with(tokenizer) -> Callable[[list[dict], bool], str]:
    """The tokenizer's chat template as chat_segments calls it."""
    return lambda messages, add_generation_prompt: tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def tokenize_row(row: dict, tokenizer, max_seq_length: int) -> Example | None:
    """Token ids with prompt tokens masked; truncated to max_seq_length; None when no response token survives."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, is_response in chat_segments(row, render_with(tokenizer)):
        # Each piece is tokenised alone, exactly as the prompt is tokenised when the model answers it later.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if is_response else [IGNORE_INDEX] * len(ids))
    example = Example(input_ids[:max_seq_length], labels[:max_seq_length])
    return example if example.target_count else None


def tokenize_rows(rows: list[dict], tokenizer, max_seq_length: int) -> list[Example]:
    """Every row that keeps at least one response token within max_seq_length."""
    examples = [tokenize_row(row, tokenizer, max_seq_length) for row in rows]
    kept = [example for example in examples if example is not None]
    if len(kept) < len(rows):
        logger.warning("%d of %d rows have no response token within max_seq_length=%d and are skipped",
                       len(rows) - len(kept), len(rows), max_seq_length)
    return kept


def pack_examples(examples: list[Example], max_seq_length: int, packing: bool) -> list[list[Example]]:
    """Training rows: with packing, consecutive whole examples share a row up to max_seq_length; else one each."""
    if not packing:
        return [[example] for example in examples]
    rows: list[list[Example]] = []
    current: list[Example] = []
    length = 0
    for example in examples:
        if current and length + len(example.input_ids) > max_seq_length:
            rows.append(current)
            current, length = [], 0
        current.append(example)
        length += len(example.input_ids)
    if current:
        rows.append(current)
    return rows


def collate(rows: list[list[Example]], pad_token_id: int) -> Batch:
    """Right-padded tensors; each packed example restarts its positions, which keeps attention inside it."""
    width = max(sum(len(example.input_ids) for example in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    token_count = 0
    for row_index, row in enumerate(rows):
        start = 0
        for example in row:
            end = start + len(example.input_ids)
            input_ids[row_index, start:end] = torch.tensor(example.input_ids)
            labels[row_index, start:end] = torch.tensor(example.labels)
            # The first token of an example is never predicted from the example packed before it.
            labels[row_index, start] = IGNORE_INDEX
            position_ids[row_index, start:end] = torch.arange(end - start)
            start = end
        token_count += start
        attention_mask[row_index, :start] = 1
        # Padding continues the last example's positions: a new run of positions would split off a packed segment.
        last_length = len(row[-1].input_ids)
        position_ids[row_index, start:] = torch.arange(last_length, last_length + width - start)
    target_count = int((labels[:, 1:] != IGNORE_INDEX).sum())
    return Batch(input_ids, labels, position_ids, attention_mask, token_count, target_count)


def _micro_batch_picks(row_count: int, batch_size: int, accumulation: int, seed: int) -> Iterator[list[list[int]]]:
    """Endless optimizer steps as row indices: `accumulation` micro-batches of `batch_size`, reshuffled every epoch."""
    shuffler = random.Random(seed)
    order: list[int] = []
    while True:
        step = []
        for _ in range(accumulation):
            picked = []
            while len(picked) < batch_size:
                if not order:
                    order = list(range(row_count))
                    shuffler.shuffle(order)
                picked.append(order.pop())
            step.append(picked)
        yield step


def optimizer_steps(rows: list[list[Example]], batch_size: int, accumulation: int, seed: int,
                    pad_token_id: int) -> Iterator[list[Batch]]:
    """Endless optimizer steps, each `accumulation` micro-batches of `batch_size` rows, reshuffled every epoch."""
    for step in _micro_batch_picks(len(rows), batch_size, accumulation, seed):
        yield [collate([rows[index] for index in picked], pad_token_id) for picked in step]


@dataclass(frozen=True)
class PeakBatch:
    """The widest micro-batch a run trains on, found in the order optimizer_steps follows (no tensors built)."""

    rows: int
    width: int  # padded length: the longest row of that micro-batch
    most_targets: int  # the most loss positions any micro-batch of the run has


def peak_micro_batch(rows: list[list[Example]], batch_size: int, accumulation: int, seed: int, steps: int) -> PeakBatch:
    """Scan the run's `steps` optimizer steps for the widest micro-batch and the largest target count."""
    lengths = [sum(len(example.input_ids) for example in row) for row in rows]
    # collate drops each example's first label (never predicted from the example before it)
    targets = [sum(sum(label != IGNORE_INDEX for label in example.labels[1:]) for example in row) for row in rows]
    width, most = 0, 0
    picks = _micro_batch_picks(len(rows), batch_size, accumulation, seed)
    for _ in range(steps):
        for picked in next(picks):
            width = max(width, max(lengths[index] for index in picked))
            most = max(most, sum(targets[index] for index in picked))
    return PeakBatch(rows=batch_size, width=width, most_targets=most)


def eval_batches(rows: list[list[Example]], batch_size: int, pad_token_id: int) -> list[Batch]:
    """The held-out rows in fixed order, in micro-batches."""
    return [collate(rows[start:start + batch_size], pad_token_id) for start in range(0, len(rows), batch_size)]
