"""The calculator's activation model against what autograd really saves, counted with torch on tiny-llama and shrunk
Phi-3, Gemma 2 and Qwen2.5 models.

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
from app.calc.memory import estimate_activations, estimate_memory
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from app.spec.training import CalcTrainingSpec

CONFIG = json.loads((Path(__file__).parents[2] / "content" / "models" / "tiny-llama.json").read_text())
# Saved-tensor bytes within 2% of the count (measured: within 1%): what the model leaves out is RoPE's cos/sin (shared by every
# layer) and scalars; the rules themselves are exact for this architecture.
TOLERANCE = 0.02
BATCH, SEQ = 2, 64


def saved_bytes(model, input_ids, vocab: int = CONFIG["vocab_size"]) -> tuple[int, int]:
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
        hidden = causal_lm.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
        logits = causal_lm.lm_head(hidden)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), input_ids.flatten(), reduction="sum")
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


MODELS = Path(__file__).parents[2] / "content" / "models"
SHRUNK = {  # catalogue configs shrunk to CPU size: each keeps its family's structure (what the rules branch on)
    "phi-3-mini": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 4, "vocab_size": 512, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
    "gemma-2-2b": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "query_pre_attn_scalar": 16},
    "qwen2.5-0.5b": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "vocab_size": 512},
    "tiny-llama": {},
    "tiny-llama, one layer": {"num_hidden_layers": 1},
}
FAMILY_CASES = [  # (model, base dtype, LoRA fields): fused qkv/gate_up, eager soft-capped attention, biases, adapters
    # outside the layers (an adapted embedding and output layer) and trained copies of them (modules_to_save)
    ("phi-3-mini", "bf16", "all-linear"),
    ("gemma-2-2b", "fp32", "all-linear"),
    ("gemma-2-2b", "bf16", "all-linear"),
    ("qwen2.5-0.5b", "fp32", "all-linear"),
    ("qwen2.5-0.5b", "bf16", "all-linear"),
    ("tiny-llama", "fp32", ["lm_head", "embed_tokens", "q_proj"]),
    ("tiny-llama", "bf16", ["lm_head", "embed_tokens", "q_proj"]),
    ("gemma-2-2b", "bf16", ["lm_head", "embed_tokens", "q_proj"]),
    ("tiny-llama", "bf16", {"target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]}),
    ("tiny-llama", "bf16", {"target_modules": ["q_proj", "v_proj"], "modules_to_save": ["embed_tokens"]}),
    ("tiny-llama, one layer", "bf16", "all-linear"),
]


@pytest.mark.parametrize(("model_id", "dtype", "fields"), FAMILY_CASES)
def test_activation_term_matches_saved_tensors_across_families(model_id, dtype, fields):
    config = json.loads((MODELS / f"{model_id.split(',')[0]}.json").read_text()) | SHRUNK[model_id]
    torch.manual_seed(0)
    eager = config["model_type"] == "gemma2"  # soft-capping: transformers runs Gemma 2 with eager attention
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**config), attn_implementation="eager" if eager else "sdpa")
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    lora = {"r": 8, "lora_alpha": 16, **(fields if isinstance(fields, dict) else {"target_modules": fields})}
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", **lora))
    model.train()
    measured, log_probs = saved_bytes(model, torch.randint(0, config["vocab_size"], (BATCH, SEQ)), config["vocab_size"])

    arch = architecture_of(config)
    training = CalcTrainingSpec(per_device_train_batch_size=BATCH, max_seq_length=SEQ, base_dtype=dtype)
    estimate = estimate_activations(arch, count_trainable(LoraSpec(**lora), arch), training, 0.0)
    assert estimate.activations == pytest.approx(measured, rel=TOLERANCE)
    assert estimate.logits_saved == log_probs


def _optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer the HF Trainer builds for `optim` (transformers' Adafactor with the Trainer's arguments)."""
    if name == "adafactor":
        return transformers.optimization.Adafactor(params, lr=1e-3, scale_parameter=False, relative_step=False)
    return {"adamw_torch": torch.optim.AdamW, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
            "rmsprop": torch.optim.RMSprop}[name](params, lr=1e-3)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("optim", ["adamw_torch", "adafactor", "adagrad", "sgd"])
def test_adapter_weights_gradients_and_optimizer_states_match_the_trained_tensors(optim, dtype):
    """LoRA adapters (fp32 under peft's autocast), a modules_to_save copy of lm_head and the attention biases (both in
    the base dtype), after one step."""
    torch.manual_seed(0)
    with_biases = CONFIG | {"attention_bias": True}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(with_biases))
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    lora = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"], "bias": "all"}
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", **lora))
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    input_ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ))
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    optimizer = _optimizer(optim, trained)
    optimizer.step()
    state = sum(value.nbytes for values in optimizer.state.values() for value in values.values()
                if torch.is_tensor(value) and value.dim() > 0)  # step counters are scalars

    arch = architecture_of(with_biases)
    training = CalcTrainingSpec(per_device_train_batch_size=BATCH, max_seq_length=SEQ, base_dtype=dtype, optim=optim)
    estimate = estimate_memory(arch, count_trainable(LoraSpec(**lora), arch), training, 0.0)
    parts = {part.key: part.bytes for part in estimate.parts}
    adapters = sum(parameter.numel() for name, parameter in model.named_parameters() if "lora_" in name)
    assert f"{adapters:,} adapter parameters" in next(part.detail for part in estimate.parts if part.key == "adapter_weights")
    assert parts["adapter_weights"] == sum(parameter.nbytes for parameter in trained)
    assert parts["gradients"] == sum(parameter.grad.nbytes for parameter in trained)
    assert parts["optimizer"] == state
