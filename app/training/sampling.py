"""Greedy answers to chat prompts: the before/after samples and the exact-match score."""

from __future__ import annotations

import torch
from transformers import GenerationConfig, PreTrainedModel

from app.content.datasets import prompt_and_response


@torch.no_grad()
def greedy_answers(model: PreTrainedModel, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                   device: torch.device, batch_size: int = 16) -> list[str]:
    """The model's greedy continuation of each conversation after the assistant header, special tokens removed."""
    was_training = model.training
    model.eval()
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # generate() hands the output layer the last position as a strided view of the hidden states. With the layer's
    # weight frozen (as LoRA leaves it) torch's matmul then expands the weight to one copy per row (batch x hidden x
    # vocabulary: 864 MiB for 16 SmolLM2 prompts, the peak of a whole job) instead of one matrix product; a
    # contiguous input takes the single product. Measured in the answers' peak memory, not in their tokens.
    contiguous_input = model.get_output_embeddings().register_forward_pre_hook(lambda layer, args: (args[0].contiguous(), *args[1:]))
    try:
        answers = _generate(model, tokenizer, conversations, config, device, batch_size)
    finally:
        contiguous_input.remove()
    model.train(was_training)
    return answers


def _generate(model: PreTrainedModel, tokenizer, conversations: list[list[dict]], config: GenerationConfig,
              device: torch.device, batch_size: int) -> list[str]:
    """Greedy answers, batch_size prompts at a time."""
    answers: list[str] = []
    for start in range(0, len(conversations), batch_size):
        texts = [tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
                 for conversation in conversations[start:start + batch_size]]
        # Left padding keeps every prompt's last token at the end, where generation continues.
        inputs = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt").to(device)
        output = model.generate(**inputs, generation_config=config)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        answers.extend(text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return answers


def sample_rows(model: PreTrainedModel, tokenizer, rows: list[dict], max_new_tokens: int,
                device: torch.device) -> list[dict]:
    """{"prompt", "response"} for each row's prompt: the last user turn and the model's answer."""
    conversations = [prompt_and_response(row)[0] for row in rows]
    answers = greedy_answers(model, tokenizer, conversations, max_new_tokens, device)
    return [{"prompt": conversation[-1]["content"], "response": answer}
            for conversation, answer in zip(conversations, answers)]


def exact_match(model: PreTrainedModel, tokenizer, rows: list[dict], device: torch.device) -> float:
    """Fraction of rows whose greedy answer equals the reference exactly (surrounding whitespace ignored)."""
    references = [prompt_and_response(row)[1].strip() for row in rows]
    longest = max(len(tokenizer(reference, add_special_tokens=False)["input_ids"]) for reference in references)
    # A few tokens past the longest reference are enough to tell a wrong answer from a right one.
    answers = greedy_answers(model, tokenizer, [prompt_and_response(row)[0] for row in rows], longest + 4, device)
    return sum(answer == reference for answer, reference in zip(answers, references)) / len(rows)
