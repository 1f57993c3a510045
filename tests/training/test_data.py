"""Tokenisation with the chat template, prompt masking, truncation, packing and collation."""

from __future__ import annotations

import torch

from app.training.byte_tokenizer import build_byte_tokenizer
from app.training.data import IGNORE_INDEX, Example, collate, optimizer_steps, pack_examples, peak_micro_batch, tokenize_row
from tests.training.conftest import VARIED_ROWS

TOKENIZER = build_byte_tokenizer()


def decode(ids: list[int]) -> str:
    return TOKENIZER.decode(ids)


def test_chat_template_is_applied_and_only_the_response_is_a_target():
    example = tokenize_row({"prompt": "What is r?", "response": "The rank."}, TOKENIZER, 512)
    assert decode(example.input_ids) == "<|im_start|>user\nWhat is r?<|im_end|>\n<|im_start|>assistant\nThe rank.<|im_end|>\n"
    targets = [token for token, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert decode(targets) == "The rank.<|im_end|>\n"
    # Masked tokens are exactly the prompt: a prefix of the sequence, then only targets.
    first_target = example.labels.index(next(label for label in example.labels if label != IGNORE_INDEX))
    assert all(label == IGNORE_INDEX for label in example.labels[:first_target])
    assert example.labels[first_target:] == example.input_ids[first_target:]
    assert decode(example.input_ids[:first_target]).endswith("<|im_start|>assistant\n")


def test_every_assistant_turn_of_a_conversation_is_a_target_and_nothing_else():
    example = tokenize_row(VARIED_ROWS[6], TOKENIZER, 512)
    targets = decode([token if label != IGNORE_INDEX else TOKENIZER.convert_tokens_to_ids("|") for token, label in zip(example.input_ids, example.labels)])
    assert "Hello.<|im_end|>\n" in targets and "Zeros.<|im_end|>\n" in targets
    assert "Hi" not in targets and "What is B" not in targets and "system" not in targets


def test_truncation_keeps_max_seq_length_and_drops_rows_without_targets():
    row = {"prompt": "p" * 50, "response": "r" * 50}
    assert len(tokenize_row(row, TOKENIZER, 70).input_ids) == 70
    assert tokenize_row(row, TOKENIZER, 40) is None  # the prompt alone fills 40 tokens


def test_packing_fills_rows_with_whole_examples_up_to_the_limit():
    examples = [Example([1] * length, [1] * length) for length in (30, 30, 50, 20, 90)]
    rows = pack_examples(examples, 100, packing=True)
    assert [[len(e.input_ids) for e in row] for row in rows] == [[30, 30], [50, 20], [90]]
    assert pack_examples(examples, 100, packing=False) == [[example] for example in examples]


def test_collate_restarts_positions_per_packed_example_and_masks_padding_and_boundaries():
    first = Example([5, 6, 7], [IGNORE_INDEX, 6, 7])
    second = Example([8, 9], [8, 9])
    batch = collate([[first, second], [first]], pad_token_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]
    # The second packed example's first token is not predicted from the first example; padding carries no loss.
    assert batch.labels.tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9], [IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.token_count == 8 and batch.target_count == 5


def test_packed_examples_do_not_attend_to_each_other():
    from app.training.loading import build_random_model
    from app.settings import Settings

    model, tokenizer = build_random_model(Settings(), 0)
    first, second = (tokenize_row(row, tokenizer, 512) for row in VARIED_ROWS[:2])
    packed = collate([[first, second]], tokenizer.pad_token_id)
    alone = collate([[second]], tokenizer.pad_token_id)
    with torch.no_grad():
        packed_logits = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
        alone_logits = model(input_ids=alone.input_ids, position_ids=alone.position_ids, use_cache=False).logits
    torch.testing.assert_close(packed_logits[0, len(first.input_ids):], alone_logits[0], rtol=1e-4, atol=1e-5)


def test_each_optimizer_step_takes_exactly_batch_times_accumulation_rows_and_covers_every_row_per_epoch():
    rows = [[Example([index + 1, 1], [1, 1])] for index in range(10)]
    steps = optimizer_steps(rows, batch_size=2, accumulation=5, seed=3, pad_token_id=0)
    first_epoch = next(steps)
    assert [batch.input_ids.shape[0] for batch in first_epoch] == [2] * 5
    assert sorted(int(token) for batch in first_epoch for token in batch.input_ids[:, 0]) == list(range(1, 11))


def test_peak_micro_batch_is_the_widest_batch_optimizer_steps_builds():
    import random

    generator = random.Random(3)
    examples = []
    for _ in range(23):
        length = generator.randint(3, 40)
        prompt = generator.randint(1, length - 1)
        examples.append(Example(list(range(length)), [IGNORE_INDEX] * prompt + list(range(prompt, length))))
    for packing in (False, True):
        rows = pack_examples(examples, 64, packing)
        steps = optimizer_steps(rows, 3, 2, 7, 0)
        batches = [batch for _ in range(9) for batch in next(steps)]
        peak = peak_micro_batch(rows, 3, 2, 7, 9)
        assert peak.width == max(batch.input_ids.shape[1] for batch in batches)
        assert peak.most_targets == max(batch.target_count for batch in batches)
        assert peak.rows == 3
