"""Exact gradient accumulation and the loss normaliser, proven on tiny-llama with real LoRA layers."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from app.settings import Settings
from app.training.data import collate, tokenize_row
from app.training.loop import train_loop
from app.training.loss import summed_loss
from app.training.loading import build_random_model
from app.spec import TrainingSpec
from tests.training.conftest import VARIED_ROWS


@pytest.fixture(scope="module")
def lora_model_and_examples():
    """tiny-llama with random (non-zero) A and B, so every LoRA matrix gets a gradient, and 6 tokenised rows."""
    model, tokenizer = build_random_model(Settings(), 0)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    examples = [tokenize_row(row, tokenizer, 512) for row in VARIED_ROWS[:6]]
    return peft_model, examples, tokenizer.pad_token_id


def one_step(model, micro_batches, optim: str = "sgd"):
    """A copy of model after one optimizer step on micro_batches, and the step's metric row."""
    trained = copy.deepcopy(model)
    metrics = []
    config = TrainingSpec(learning_rate=0.5, optim=optim, max_grad_norm=0.0, lr_scheduler_type="constant")
    train_loop(trained, iter([micro_batches]), config, 1, torch.device("cpu"), lambda: {}, metrics.append, lambda: False)
    return trained, metrics[0]


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_k_micro_batches_of_b_update_exactly_like_one_batch_of_k_times_b(lora_model_and_examples):
    model, examples, pad = lora_model_and_examples
    whole = [collate([[example] for example in examples], pad)]
    accumulated = [collate([[example] for example in examples[start:start + 2]], pad) for start in (0, 2, 4)]
    # The micro-batches hold different numbers of target tokens: a mean per micro-batch would weigh them wrongly.
    assert len({batch.target_count for batch in accumulated}) > 1

    one_batch, one_batch_metric = one_step(model, whole)
    three_micro, three_micro_metric = one_step(model, accumulated)

    assert three_micro_metric["train_loss"] == pytest.approx(one_batch_metric["train_loss"], rel=1e-5)
    assert three_micro_metric["grad_norm"] == pytest.approx(one_batch_metric["grad_norm"], rel=1e-5)
    before, after_whole, after_accumulated = lora_weights(model), lora_weights(one_batch), lora_weights(three_micro)
    for name in before:
        assert not torch.equal(after_whole[name], before[name]), f"{name} did not move"
        torch.testing.assert_close(after_accumulated[name], after_whole[name], rtol=1e-5, atol=1e-6)


def test_averaging_per_micro_batch_means_would_not_be_exact(lora_model_and_examples):
    """The control: the common mean-of-means shortcut gives a different loss, so the test above has teeth."""
    model, examples, pad = lora_model_and_examples
    accumulated = [collate([[example] for example in examples[start:start + 2]], pad) for start in (0, 2, 4)]
    whole = collate([[example] for example in examples], pad)
    with torch.no_grad():
        causal_lm = model.get_base_model()
        exact = summed_loss(causal_lm, whole) / whole.target_count
        mean_of_means = sum(summed_loss(causal_lm, batch) / batch.target_count for batch in accumulated) / 3
    assert abs(float(mean_of_means) - float(exact)) > 1e-3


def test_packing_leaves_the_summed_loss_unchanged(lora_model_and_examples):
    model, examples, pad = lora_model_and_examples
    with torch.no_grad():
        causal_lm = model.get_base_model()
        packed = summed_loss(causal_lm, collate([examples[:3], examples[3:]], pad))
        separate = sum(summed_loss(causal_lm, collate([[example]], pad)) for example in examples)
    torch.testing.assert_close(packed, separate, rtol=1e-5, atol=1e-4)


def test_summed_loss_equals_transformers_loss_on_the_same_labels(lora_model_and_examples):
    """Computing logits only at target positions gives the loss transformers computes from all logits."""
    model, examples, pad = lora_model_and_examples
    batch = collate([[example] for example in examples], pad)
    with torch.no_grad():
        ours = summed_loss(model.get_base_model(), batch) / batch.target_count
        theirs = model(input_ids=batch.input_ids, position_ids=batch.position_ids, labels=batch.labels, use_cache=False).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_update(lora_model_and_examples):
    model, examples, pad = lora_model_and_examples
    batches = [collate([[example] for example in examples], pad)]
    plain, plain_metric = one_step(model, batches)
    checkpointed_start = copy.deepcopy(model)
    checkpointed_start.get_base_model().activation_checkpointing_enable()
    checkpointed, checkpointed_metric = one_step(checkpointed_start, batches)
    assert checkpointed_metric["grad_norm"] == pytest.approx(plain_metric["grad_norm"], rel=1e-5)
    after_plain, after_checkpointed = lora_weights(plain), lora_weights(checkpointed)
    for name in after_plain:
        torch.testing.assert_close(after_checkpointed[name], after_plain[name], rtol=1e-5, atol=1e-6)
