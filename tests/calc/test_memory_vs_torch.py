"""The calculator's activation model against what autograd really saves, counted on tiny-llama with torch.

Every tensor autograd packs for the backward pass goes through torch.autograd.graph.saved_tensors_hooks;
counting each storage once and leaving out the parameters gives the bytes the forward pass keeps. That is
the calculator's `activations` part plus the fp32 log-probs (`logits_saved`), which are compared on their own.
The model runs on CPU (fp32, and bf16 for the 16-bit rules: per-module fp32 casts of LoRA inputs, fp32 norms).
Checkpointing is left out: torch.utils.checkpoint packs through hooks of its own, which hide the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
import transformers

from tests.calc.peft_oracle import architecture_of
from app.calc.memory import estimate_activations
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from app.spec.training import CalcTrainingSpec

CONFIG = json.loads((Path(__file__).parents[2] / "content" / "models" / "tiny-llama.json").read_text())
# Saved-tensor bytes within 2% of the count (measured: within 1%): what the model leaves out is RoPE's cos/sin (shared by every
# layer) and scalars; the rules themselves are exact for this architecture.
TOLERANCE = 0.02
BATCH, SEQ = 2, 64


def saved_bytes(model, input_ids) -> tuple[int, int]:
    """(activation bytes, log-prob bytes) autograd keeps after a forward pass with the next-token loss."""
    params = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    storages: dict[int, tuple[int, tuple[int, ...], torch.dtype]] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages.setdefault(storage.data_ptr(), (storage.nbytes(), tuple(tensor.shape), tensor.dtype))
        return tensor

    causal_lm = model.get_base_model()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        hidden = causal_lm.model(input_ids=input_ids, use_cache=False).last_hidden_state
        logits = causal_lm.lm_head(hidden)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), input_ids.flatten(), reduction="sum")
    vocab = CONFIG["vocab_size"]
    log_probs = sum(size for size, shape, dtype in storages.values() if shape and shape[-1] == vocab and dtype == torch.float32)
    del loss
    return sum(size for size, _, _ in storages.values()) - log_probs, log_probs


CASES = [  # (base dtype, target_modules, lora_dropout)
    ("fp32", "all-linear", 0.0),
    ("fp32", "all-linear", 0.1),
    ("fp32", ["q_proj", "v_proj"], 0.0),
    ("fp32", ["o_proj", "down_proj"], 0.0),
    ("bf16", "all-linear", 0.0),
    ("bf16", ["q_proj", "k_proj", "v_proj"], 0.0),
]


@pytest.mark.parametrize(("dtype", "targets", "dropout"), CASES)
def test_activation_term_matches_saved_tensors(dtype, targets, dropout):
    torch.manual_seed(0)
    config = transformers.LlamaConfig.from_dict(CONFIG)
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config).to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    lora = {"r": 8, "lora_alpha": 16, "target_modules": targets, "lora_dropout": dropout}
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", **lora))
    model.train()
    measured, log_probs = saved_bytes(model, torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ)))

    arch = architecture_of(CONFIG)
    training = CalcTrainingSpec(per_device_train_batch_size=BATCH, max_seq_length=SEQ, base_dtype=dtype)
    estimate = estimate_activations(arch, count_trainable(LoraSpec(**lora), arch), training, dropout)
    assert estimate.activations == pytest.approx(measured, rel=TOLERANCE)
    assert estimate.logits_saved == log_probs  # fp32 log-probs of every token: exact
    assert estimate.logits_peak == 3 * log_probs
