"""Memory estimate: the published per-weight costs, the saved-tensor terms per architecture, and directions."""

from __future__ import annotations

import pytest

from app.calc.memory import BatchShape, estimate_activations, estimate_memory
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from app.spec.training import CalcTrainingSpec
from tests.calc.peft_oracle import architecture_of, catalogue_config

ARCH = architecture_of(catalogue_config("llama-3.1-8b"))
SPEC = LoraSpec(r=16, target_modules="all-linear")
COUNT = count_trainable(SPEC, ARCH)

# Llama-3.1-8B from its published shapes, not from app.calc: 32 layers, hidden 4096, 8 key/value heads of 128
# (k and v 1024 wide), MLP 14336, vocabulary 128,256, untied embeddings.
LLAMA_8B_PARAMS = 8_030_261_248  # the model card's count
LLAMA_8B_LINEAR = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)  # q, o; k, v; gate, up, down
LLAMA_8B_OTHER = 2 * 128_256 * 4096 + (2 * 32 + 1) * 4096  # embeddings and lm_head; 65 RMSNorm weights
LLAMA_8B_ROWS = 32 * (4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096)  # output features of the quantised Linears
LLAMA_8B_LORA_R16 = 41_943_040  # peft's print_trainable_parameters for all-linear r=16


def parts(dropout: float = 0.0, **training) -> dict[str, int]:
    estimate = estimate_memory(ARCH, COUNT, CalcTrainingSpec(**training), dropout)
    assert estimate.total_bytes == sum(part.bytes for part in estimate.parts)
    return {part.key: part.bytes for part in estimate.parts}


@pytest.mark.parametrize(
    ("dtype", "bytes_per_param"),
    [("fp32", 4), ("bf16", 2), ("fp16", 2)],
)
def test_unquantised_weights(dtype, bytes_per_param):
    assert LLAMA_8B_LINEAR + LLAMA_8B_OTHER == LLAMA_8B_PARAMS  # the hand count adds up to the published one
    assert parts(base_dtype=dtype)["base_weights"] == LLAMA_8B_PARAMS * bytes_per_param


def test_nf4_bits_per_weight():
    linear = sum(m.in_features * m.out_features for m in ARCH.modules if m.kind == "linear" and m.name != "lm_head")
    rest = ARCH.base_params - linear
    plain = parts(base_dtype="nf4", framework="unsloth")["base_weights"]
    double = parts(base_dtype="nf4", bnb_4bit_use_double_quant=True, framework="unsloth")["base_weights"]
    assert plain == int(linear * (4 + 0.5) / 8 + rest * 2)  # 4 bits + one fp32 absmax per 64 weights
    assert double == pytest.approx(linear * (4 + 0.127) / 8 + rest * 2, rel=1e-4)  # QLoRA's 0.127 bit
    # transformers + peft: prepare_model_for_kbit_training upcasts the rest (embeddings, norms, lm_head) to fp32
    assert parts(base_dtype="nf4")["base_weights"] == int(linear * (4 + 0.5) / 8 + rest * 4)


def test_torchtune_quantises_only_the_adapted_linears():
    count = count_trainable(LoraSpec(r=8, target_modules=["q_proj", "v_proj"]), ARCH)
    quantised = sum(m.in_features * m.out_features for m in ARCH.modules if m.leaf in ("q_proj", "v_proj"))
    estimate = estimate_memory(ARCH, count, CalcTrainingSpec(base_dtype="nf4", framework="torchtune"), 0.0)
    weights = {part.key: part.bytes for part in estimate.parts}["base_weights"]
    assert weights == int(quantised * (4 + 0.5) / 8 + (ARCH.base_params - quantised) * 2)


def test_int8_keeps_one_scale_per_row():
    quantised = [m for m in ARCH.modules if m.kind == "linear" and m.name != "lm_head"]
    expected = sum(m.in_features * m.out_features + 4 * m.out_features for m in quantised)
    assert parts(base_dtype="int8", framework="unsloth")["base_weights"] == expected + (ARCH.base_params - sum(m.in_features * m.out_features for m in quantised)) * 2


@pytest.mark.parametrize(
    ("optimizer", "state_bytes"),
    [("adamw_torch", 8), ("paged_adamw_32bit", 8), ("adamw_8bit", 2), ("paged_adamw_8bit", 2), ("sgd", 0), ("adagrad", 4), ("rmsprop", 4)],
)
def test_optimizer_state_per_trainable_parameter(optimizer, state_bytes):
    result = parts(optim=optimizer)
    assert result["optimizer"] == LLAMA_8B_LORA_R16 * state_bytes
    assert result["adapter_weights"] == result["gradients"] == LLAMA_8B_LORA_R16 * 4


def test_adafactor_is_far_smaller_than_adam():
    assert parts(optim="adafactor")["optimizer"] < parts(optim="adamw_torch")["optimizer"] / 4


@pytest.mark.parametrize(
    ("change", "grows"),
    [
        (dict(per_device_train_batch_size=16), True),
        (dict(max_seq_length=4096), True),
        (dict(gradient_checkpointing=True), False),
        (dict(gradient_accumulation_steps=8), None),
        (dict(devices=8), None),
    ],
)
def test_activation_direction(change, grows):
    base, changed = parts()["activations"], parts(**change)["activations"]
    if grows is None:
        assert changed == base  # memory is per device and per micro-batch
    else:
        assert (changed > base) == grows


def test_dropout_keeps_a_copy_of_inputs():
    assert parts(dropout=0.1)["activations"] > parts()["activations"]


def test_effective_batch_and_tokens():
    spec = CalcTrainingSpec(per_device_train_batch_size=4, gradient_accumulation_steps=8, devices=2, max_seq_length=512)
    assert (spec.effective_batch_size, spec.tokens_per_step) == (64, 64 * 512)


SMOL = architecture_of(catalogue_config("smollm2-135m-instruct"))
H, I, Q, KV, HEADS = 576, 1536, 9 * 64, 3 * 64, 9  # SmolLM2-135M: GQA with 3 key/value heads


def saved(arch=SMOL, dropout=0.0, targets="all-linear", r=16, shape=None, **training):
    count = count_trainable(LoraSpec(r=r, target_modules=targets, lora_dropout=dropout), arch)
    return estimate_activations(arch, count, CalcTrainingSpec(**training), dropout, shape)


# Bytes per token per layer, written out from what each op saves (see estimate_activations' docstring).
LAYER_TERMS = [
    # (base dtype, targets, dropout, {term: bytes per token per layer})
    ("fp32", "all-linear", 0.0, {
        "norms": 2 * (4 * H + 4),  # two RMSNorms: fp32 input + rsqrt
        "attention": 4 * (2 * Q + 2 * KV) + 4 * HEADS,  # q, k after RoPE, v, output; fp32 logsumexp
        "mlp": 3 * 4 * I,  # gate output, SiLU output, up output
        "lora_inputs": 4 * (H + H + I),  # norm outputs (shared by q/k/v and gate/up) and down's input; o shares SDPA's
        "lora_rank": 7 * 4 * 16,
    }),
    ("bf16", "all-linear", 0.0, {
        "norms": 2 * (4 * H + 4),  # the norms upcast to fp32 whatever the activation dtype
        "attention": 2 * (2 * Q + 2 * KV) + 4 * HEADS,
        "mlp": 3 * 2 * I,
        "lora_inputs": 4 * (3 * H + Q + 2 * H + I),  # every adapted module casts its own fp32 copy
        "lora_rank": 7 * 4 * 16,
    }),
    ("fp32", ["q_proj", "v_proj"], 0.0, {"lora_inputs": 4 * H, "lora_rank": 2 * 4 * 16}),
    ("fp32", ["q_proj", "v_proj"], 0.1, {"lora_inputs": 2 * H * (4 + 4)}),  # CPU dropout: float noise + dropped copy
    ("bf16", ["q_proj", "v_proj"], 0.1, {"lora_inputs": 2 * H * (4 + 1)}),  # CUDA fused dropout: bool mask
    ("bf16", ["o_proj", "down_proj"], 0.0, {"lora_inputs": 4 * (Q + I), "lora_rank": 2 * 4 * 16}),
    ("fp32", ["o_proj"], 0.0, {"lora_inputs": 0}),  # the attention output is SDPA's, already kept
]
FP32_LAYER, BF16_LAYER = sum(LAYER_TERMS[0][3].values()), sum(LAYER_TERMS[1][3].values())  # all-linear r=16, per token


@pytest.mark.parametrize(("dtype", "targets", "dropout", "terms"), LAYER_TERMS)
def test_layer_terms_per_token(dtype, targets, dropout, terms):
    estimate = saved(targets=targets, dropout=dropout, base_dtype=dtype)
    assert {key: estimate.per_token[key] for key in terms} == terms


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        # (training settings, activations part in bytes) for SmolLM2-135M, all-linear r=16, fp32
        (dict(per_device_train_batch_size=1, max_seq_length=128, base_dtype="fp32"),
         128 * (30 * FP32_LAYER - (4 * H + 4) + 4 * H + 4 + 9)),  # 30 layers, less layer 0's frozen-input norm; final norm
        (dict(per_device_train_batch_size=4, max_seq_length=256, base_dtype="fp32", gradient_checkpointing=True),
         # layer inputs + the largest layer recomputed + its output and the gradient arriving from above
         1024 * (30 * 4 * H + FP32_LAYER + 2 * 4 * H + 4 * H + 4 + 9)),
        # on CUDA the loss's backward frees its logits (3 fp32 copies x 49,152 per token) before the last layer is
        # recomputed, and the recomputed layer fits in those blocks: only the layer inputs remain beside the loss peak
        (dict(per_device_train_batch_size=4, max_seq_length=256, base_dtype="bf16", gradient_checkpointing=True),
         1024 * (30 * 2 * H + 4 * H + 4 + 9)),
    ],
)
def test_activation_totals(training, expected):
    assert saved(**training).activations == expected


def test_a_recomputed_layer_larger_than_the_loss_peak_adds_its_excess_on_cuda():
    # 8 loss positions in 1,024 tokens (a prompt-masked batch): the logits' peak is 8 x 49,152 x 12 bytes
    shape = BatchShape(rows=4, width=256, loss_tokens=8)
    estimate = saved(base_dtype="bf16", gradient_checkpointing=True, shape=shape)
    recompute = 1024 * (BF16_LAYER + 2 * 2 * H)  # the layer and, beside it, its output and the gradient from above
    assert estimate.activations == 1024 * (30 * 2 * H + 4 * H + 4 + 9) + recompute - 8 * 49152 * 12
    # a CPU run keeps the sum: glibc keeps freed heap mapped, and a freed mapping is given back to the kernel
    cpu = saved(base_dtype="fp32", gradient_checkpointing=True, shape=shape)
    assert cpu.activations == 1024 * (30 * 4 * H + FP32_LAYER + 2 * 4 * H + 4 * H + 4 + 9)


def test_a_4bit_base_prepared_for_kbit_training_keeps_fp32_layer_inputs():
    """prepare_model_for_kbit_training's fp32 norms make the residual stream fp32; Unsloth and torchtune keep 16 bit."""
    for framework, width in (("transformers", 4), ("axolotl", 4), ("unsloth", 2), ("torchtune", 2)):
        estimate = saved(base_dtype="nf4", gradient_checkpointing=True, framework=framework)
        assert estimate.layer_input_per_token == width * H, framework
    assert saved(base_dtype="bf16", gradient_checkpointing=True).layer_input_per_token == 2 * H


@pytest.mark.parametrize(("batch", "seq"), [(1, 128), (4, 256), (8, 1024)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "nf4"])
def test_logits_term(batch, seq, dtype):
    estimate = estimate_memory(SMOL, count_trainable(SPEC, SMOL),
                               CalcTrainingSpec(per_device_train_batch_size=batch, max_seq_length=seq, base_dtype=dtype), 0.0)
    logits = {part.key: part.bytes for part in estimate.parts}["logits"]
    assert logits == 3 * batch * seq * 49_152 * 4  # three fp32 tensors of tokens x SmolLM2's 49,152-entry vocabulary


@pytest.mark.parametrize(
    ("model", "grows_quadratically"),
    [("gemma-2-2b", True), ("llama-3.2-1b", False), ("qwen2.5-0.5b", False), ("phi-3-mini", False), ("gpt2", False)],
)
def test_only_eager_attention_keeps_scores(model, grows_quadratically):
    arch = architecture_of(catalogue_config(model))
    short, long = saved(arch, max_seq_length=512).layer_per_token, saved(arch, max_seq_length=1024).layer_per_token
    assert (long > short) == grows_quadratically


def test_grouped_query_attention_keeps_smaller_k_and_v():
    config = catalogue_config("smollm2-135m-instruct")
    mha = architecture_of({**config, "num_key_value_heads": 9})
    fp32 = saved(mha, base_dtype="fp32").per_token["attention"] - saved(base_dtype="fp32").per_token["attention"]
    bf16 = saved(mha, base_dtype="bf16").per_token["attention"] - saved(base_dtype="bf16").per_token["attention"]
    assert (fp32, bf16) == (4 * 2 * (Q - KV), 2 * 2 * (Q - KV))  # k and v at the key/value heads' width


@pytest.mark.parametrize(
    ("dtype", "process", "fraction"),
    # CPU: 420 MiB resident, measured for Python with torch, transformers and peft imported;
    # CUDA: the 0.5 GiB context and workspaces, and allocator slack of 25% of what a step allocates and frees
    [("fp32", 420 * 2**20, None), ("bf16", 2**29, 0.25), ("nf4", 2**29, 0.25)],
)
def test_overhead_per_device_kind(dtype, process, fraction):
    estimate = estimate_memory(SMOL, count_trainable(SPEC, SMOL), CalcTrainingSpec(base_dtype=dtype), 0.0)
    part = {p.key: p.bytes for p in estimate.parts}
    outside = {"heap_retained", "process", "allocator", "context"}
    live = sum(p.bytes for p in estimate.parts if p.key not in outside)
    assert estimate.allocated_bytes == live
    if fraction is None:  # CPU: glibc keeps about one activation peak of freed heap mapped
        assert part["heap_retained"] == part["activations"] + part["logits"]
        assert estimate.reserved_bytes == live + part["heap_retained"]
        assert estimate.total_bytes == estimate.reserved_bytes + process
    else:  # CUDA: caching-allocator slack, then the context nvidia-smi adds
        held = part["base_weights"] + part["adapter_weights"] + part["optimizer"]  # allocated once, no slack
        assert part["allocator"] == int((live - held) * fraction)
        assert estimate.reserved_bytes == live + part["allocator"]
        assert estimate.total_bytes == estimate.reserved_bytes + process == estimate.reserved_bytes + part["context"]


@pytest.mark.parametrize(
    ("training", "phrases"),
    [
        (dict(base_dtype="fp32"), ["CPU run", "glibc", "SDPA", "fp32 input"]),
        (dict(base_dtype="bf16", gradient_checkpointing=True), ["CUDA run", "checkpointing", "every token"]),
    ],
)
def test_assumptions_are_stated(training, phrases):
    estimate = estimate_memory(SMOL, count_trainable(SPEC, SMOL), CalcTrainingSpec(**training), 0.0)
    text = " ".join(estimate.assumptions)
    assert all(phrase in text for phrase in phrases)
    assert any("saved_tensors_hooks" in source for source in estimate.sources)


@pytest.mark.parametrize(
    ("training", "dropout", "flagged"),
    [
        (dict(base_dtype="fp32"), 0.1, {}),  # a CPU run: every rule was measured on this project's machines
        (dict(base_dtype="bf16"), 0.0, {"activations": 1, "allocator": 1, "context": 1}),
        (dict(base_dtype="bf16"), 0.1, {"activations": 2, "allocator": 1, "context": 1}),
        (dict(base_dtype="nf4"), 0.0, {"base_weights": 1, "activations": 1, "allocator": 1, "context": 1}),
        (dict(base_dtype="int8"), 0.0, {"base_weights": 1, "activations": 1, "allocator": 1, "context": 1}),
    ],
)
def test_cuda_only_rules_are_marked_not_measured_on_a_gpu(training, dropout, flagged):
    estimate = estimate_memory(SMOL, count_trainable(SPEC, SMOL), CalcTrainingSpec(**training), dropout)
    assert {part.key: len(part.not_measured_on_gpu) for part in estimate.parts if part.not_measured_on_gpu} == flagged
    stated = [line for line in estimate.assumptions if "not measured on a GPU yet" in line]
    assert len(stated) == (1 if flagged else 0)


@pytest.mark.parametrize(("model_id", "experts"), [("mixtral-8x7b", True), ("llama-3.1-8b", False)])
def test_the_mixture_of_experts_approximation_is_stated_for_expert_models_only(model_id, experts):
    arch = architecture_of(catalogue_config(model_id))
    estimate = estimate_memory(arch, count_trainable(SPEC, arch), CalcTrainingSpec(), 0.0)
    assert any(line.startswith("Mixture of experts") for line in estimate.assumptions) == experts
