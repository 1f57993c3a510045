"""Greedy answers from a LoRA model: the output layer is one matrix product, not a weight copy per prompt."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from torch.profiler import ProfilerActivity, profile

from app.training.loading import load_model
from app.training.sampling import greedy_answers

PROMPTS = [[{"role": "user", "content": f"What is {n} + {n}?"}] for n in range(1, 9)]


def test_a_frozen_output_layer_is_not_copied_once_per_prompt_while_generating(settings):
    loaded = load_model("tiny-llama", settings, seed=0)
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # lm_head frozen
    config = model.config
    # the copy torch's matmul makes when it expands the weight over the batch: (prompts, hidden, vocabulary)
    expanded = [len(PROMPTS), config.hidden_size, config.vocab_size]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trace:
        answers = greedy_answers(model, loaded.tokenizer, PROMPTS, 3, loaded.device)
    copies = [event.name for event in trace.events() if expanded in event.input_shapes]
    assert copies == [], f"the output layer's weight was expanded over the batch: {copies}"
    assert len(answers) == len(PROMPTS)
    head = model.get_output_embeddings()
    assert not head._forward_pre_hooks, "the contiguous-input hook is removed after generating"
    # and the hook changes no answer: the same prompts one by one (no batching, no padding) agree
    assert [greedy_answers(model, loaded.tokenizer, [prompt], 3, loaded.device)[0] for prompt in PROMPTS[:2]] == answers[:2]
    assert torch.is_grad_enabled()
