"""Summed next-token cross-entropy over response tokens, computing logits only where the loss needs them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from app.training.data import IGNORE_INDEX, Batch

# Architectures whose causal-LM head is exactly lm_head(decoder(x)): no logit soft-capping or scaling.
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def summed_loss(causal_lm: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Sum (not mean) of the token losses, so accumulated micro-batches can share one normaliser."""
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    if causal_lm.config.model_type in PLAIN_HEAD_MODEL_TYPES:
        # Prompt tokens carry no loss, so project only target positions onto the vocabulary: it saves the
        # largest matmul of a small model (49k vocabulary) and its logits' memory.
        hidden = causal_lm.model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).last_hidden_state
        logits = causal_lm.lm_head(hidden[:, :-1][keep])
    else:
        logits = causal_lm(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")
