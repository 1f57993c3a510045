"""Training memory estimate per device, as a breakdown with the assumption behind each part."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.calc.architecture import CONV1D, EMBEDDING, LINEAR, Architecture
from app.calc.trainable import PARAMETER, ParamCount
from app.spec.training import CalcTrainingSpec

GIB = 1024**3
FRAMEWORK_BYTES = GIB // 2  # CUDA context, cuBLAS workspace, kernels: outside PyTorch's allocator, inside nvidia-smi's figure
# caching-allocator slack: reserved-but-unused bytes at the peak per byte of the tensors each step allocates and frees
# (least squares over 18 published single-GPU runs, median 0.26: bench/data/published_memory.json "allocator_slack")
FRAGMENTATION = 0.25
PERSISTENT_PARTS = frozenset({"base_weights", "adapter_weights", "optimizer"})  # allocated once, held between steps


def fitted_slack(runs: list[tuple[int, int, int]]) -> float:
    """Least-squares slack per short-lived byte of measured runs: (peak allocated, allocated between steps, nvidia-smi)."""
    short_lived = [peak - held for peak, held, _ in runs]
    unused = [smi - FRAMEWORK_BYTES - peak for peak, _, smi in runs]
    return sum(s * u for s, u in zip(short_lived, unused)) / sum(s * s for s in short_lived)

LOGIT_BYTES = 12  # per token x vocabulary entry at the backward peak: log-probs, their gradient, the logits' gradient
OPTIMIZER_STATE_BYTES = {  # per fp32 trainable parameter
    "adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8,
    "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0, "adafactor": None, "adagrad": 4, "rmsprop": 4,
}
SOURCES = (
    "QLoRA, Dettmers et al. 2023 (arXiv 2305.14314): NF4 with one fp32 absmax per 64 weights; double "
    "quantisation stores it in 8 bits with one fp32 per 256 blocks (0.127 bit per weight)",
    "LLM.int8(), Dettmers et al. 2022 (arXiv 2208.07339): int8 weights with one fp32 scale per output row",
    "Reducing Activation Recomputation in Large Transformer Models, Korthikanti et al. 2022 (arXiv 2205.05198)",
    "8-bit Optimizers via Block-wise Quantization, Dettmers et al. 2021 (arXiv 2110.02861)",
    "PyTorch autograd derivative formulas (tools/autograd/derivatives.yaml): an op saves an input only when the "
    "other input's gradient needs it; counted on Llama with torch.autograd.graph.saved_tensors_hooks "
    "(tests/calc/test_memory_vs_torch.py)",
    "peft 0.21 lora.Linear.forward: adapters upcast to fp32, input cast to the adapter dtype per module",
    "FlashAttention-2, Dao 2023 (arXiv 2307.08691): backward recomputes the scores from q, k, v, output and logsumexp",
    "glibc mallopt(3), M_MMAP_THRESHOLD: dynamic threshold, freed heap stays mapped",
    "peft 0.21 tuners/lora/dora.py DoraLinearLayer.forward: the weight norm is detached; (m/||W+sBA|| - 1) x base "
    "output + m/||W+sBA|| x s x lora output keeps the base output and the LoRA output per token",
    "peft 0.21 utils/other.py prepare_model_for_kbit_training: casts every non-quantised parameter to fp32",
    "bitsandbytes functional.dequantize_4bit / MatMul4Bit: a 16-bit copy of the weight per matmul, forward and backward",
    "PyTorch CUDA semantics, memory management: memory_allocated / memory_reserved (caching allocator); nvidia-smi "
    "adds the CUDA context",
    "fms-acceleration scripts/benchmarks/refs/a100_80gb.csv: peak allocated, end allocated and nvidia-smi peaks of 18 "
    "single-GPU LoRA/QLoRA runs, the source of the allocator's slack per byte of short-lived tensors",
)


# Rules that apply only to a CUDA run and that no GPU run has measured yet (this project's machines have no GPU;
# bench/device_check.py measures them where one is lent). Each part lists the ones its figure rests on.
NOT_MEASURED_ON_GPU = "not measured on a GPU yet"
CUDA_CONTEXT_RULE = "0.5 GiB for the CUDA context, cuBLAS workspace and kernels"
CUDA_FRAGMENTATION_RULE = f"caching-allocator slack of {FRAGMENTATION:.0%} of the tensors a step allocates and frees"
CUDA_DROPOUT_RULE = "CUDA's fused dropout keeps a one-byte mask per element"
CUDA_ATTENTION_RULE = "CUDA's SDPA kernels keep what the CPU kernel keeps (q, k, v, output, logsumexp)"
CUDA_QUANTISED_RULE = "bitsandbytes' layouts: 4-bit weights with block constants, int8 weights with row scales"


@dataclass(frozen=True)
class Framework:
    """What a training framework decides about memory: loss, adapter and optimizer-state dtypes, quantisation scope."""

    label: str
    adapter_bytes: int  # dtype of LoRA weights, their gradients and (for AdamW) both moments
    logit_bytes: int  # bytes per loss token x vocabulary entry at the loss's backward peak
    loss: str  # how the loss is taken, in words
    kbit_fp32_rest: bool  # prepare_model_for_kbit_training upcasts non-quantised parameters to fp32
    quantize_adapted_only: bool  # 4-bit applies only to Linears that carry an adapter
    offload_checkpoints: bool  # gradient checkpointing keeps the layer inputs in CPU memory
    source: str
    fused_lora: bool = False  # hand-written LoRA autograd kernels: one 16-bit input per projection group, no rank output


FRAMEWORKS: dict[str, Framework] = {
    "transformers": Framework(
        "transformers + peft", 4, LOGIT_BYTES, "full logits, upcast to fp32 (transformers ForCausalLMLoss)", True, False, False,
        "transformers 5 loss_utils.ForCausalLMLoss (logits.float()); peft autocast_adapter_dtype=True"),
    "axolotl": Framework(
        "Axolotl", 4, LOGIT_BYTES, "full logits through the Trainer's loss, as transformers (no cut_cross_entropy plugin)", True, False,
        False, "Axolotl src/axolotl/loaders/model.py: prepare_model_for_kbit_training for qlora; HF Trainer loss"),
    "unsloth": Framework(
        "Unsloth", 4, 0, "Apple's Cut Cross-Entropy (lm_head and loss fused in blocks: the logits are never materialised)",
        False, False, True,
        "unsloth_zoo loss_utils.fused_linear_cross_entropy (cut_cross_entropy.linear_cross_entropy, UNSLOTH_ENABLE_CCE=1 by "
        "default); use_gradient_checkpointing=\"unsloth\" offloads layer inputs to CPU; kernels/fast_lora.py LoRA_QKV, "
        "LoRA_W and LoRA_MLP save X (and the MLP's gate and up outputs) in the compute dtype, casting A and B to it; "
        "kernels/rms_layernorm.py keeps the 16-bit input and one fp32 inverse RMS per token", fused_lora=True),
    "torchtune": Framework(
        "torchtune", 2, 6, "chunked cross-entropy (8 chunks upcast one at a time)", False, True, False,
        "torchtune modules/loss/ce_chunked_output_loss.py (CEWithChunkedOutputLoss); the model, adapters and AdamW "
        "states in bf16; QLoRA quantises the adapted Linears only (torchtune QLoRA tutorial)"),
    "litgpt": Framework(
        "LitGPT", 2, 4, "lm_head and cross-entropy in chunks of 128 tokens, no fp32 upcast", False, False, False,
        "LitGPT litgpt/utils.py chunked_cross_entropy, lm_head_chunk_size=128; precision bf16-true keeps adapters and "
        "AdamW states in bf16"),
}


@dataclass(frozen=True)
class BatchShape:
    """The peak micro-batch as data and batching make it: rows, padded width, and the positions the loss projects."""

    rows: int
    width: int
    loss_tokens: int  # positions whose logits are computed (every token, unless the trainer projects targets only)

    @property
    def tokens(self) -> int:
        """Token positions in the micro-batch, padding included."""
        return self.rows * self.width

    @classmethod
    def of(cls, training: CalcTrainingSpec) -> "BatchShape":
        """The calculator's assumption: per_device_train_batch_size rows of the typical (or maximum) length."""
        rows, width = training.per_device_train_batch_size, training.batch_seq_length
        return cls(rows, width, rows * width)


@dataclass(frozen=True)
class MemoryPart:
    """One component of the estimate."""

    key: str
    label: str
    bytes: int
    detail: str
    not_measured_on_gpu: tuple[str, ...] = ()  # the CUDA-only rules this figure rests on


GPU_BASIS = ("peak memory of the process as nvidia-smi shows it: PyTorch's peak reserved (the caching allocator's "
             "pool) plus the CUDA context")
CPU_BASIS = "peak resident set of the training process (VmHWM, what top shows as RES at its highest)"


@dataclass
class MemoryEstimate:
    """Per-device memory for one training step, with the assumptions stated.

    allocated_bytes predicts torch.cuda.max_memory_allocated, reserved_bytes max_memory_reserved and total_bytes
    the peak nvidia-smi shows (reserved + CUDA context); on CPU all three read the process's resident set.
    """

    parts: list[MemoryPart]
    total_bytes: int
    assumptions: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = SOURCES
    allocated_bytes: int = 0
    reserved_bytes: int = 0
    basis: str = GPU_BASIS


def _compute_bytes(training: CalcTrainingSpec) -> int:
    """Bytes per activation element: fp32 stays fp32, everything else computes in 16 bit."""
    return 4 if training.base_dtype == "fp32" else 2


def _quantized_modules(arch: Architecture, count: ParamCount, framework: Framework) -> list:
    """The Linear (and Conv1D) modules a quantised load stores in 4 or 8 bits."""
    adapted = {item.name for item in count.adapted}
    return [
        module for module in arch.modules if module.kind in (LINEAR, CONV1D) and module.name != arch.output_layer
        and (not framework.quantize_adapted_only or module.name in adapted)
    ]


def _base_weights(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, framework: Framework) -> MemoryPart:
    dtype = training.base_dtype
    if dtype in ("fp32", "bf16", "fp16"):
        size = 4 if dtype == "fp32" else 2
        return MemoryPart("base_weights", f"Base weights ({dtype})", arch.base_params * size,
                          f"{arch.base_params:,} parameters x {size} bytes")
    quantizable = _quantized_modules(arch, count, framework)
    quantized = sum(module.in_features * module.out_features for module in quantizable)
    rest = arch.base_params - quantized
    if dtype == "int8":
        rows = sum(module.out_features for module in quantizable)
        weights = quantized + rows * 4
        detail = f"{quantized:,} Linear weights x 1 byte + one fp32 scale per output row"
    else:
        constants = quantized / 64 + quantized / (64 * 256) * 4 if training.bnb_4bit_use_double_quant else quantized / 64 * 4
        weights = int(quantized / 2 + constants)
        detail = (
            f"{quantized:,} Linear weights x 4 bits + block constants "
            f"({'double-quantised, 0.127 bit' if training.bnb_4bit_use_double_quant else 'fp32 per 64 weights, 0.5 bit'} per weight)"
        )
    rest_size = 4 if framework.kbit_fp32_rest else 2
    detail += f"; {rest:,} other parameters (embeddings, norms, output layer, biases"
    detail += ", fused experts" if arch.num_experts else ""
    detail += ", Linears without an adapter)" if framework.quantize_adapted_only else ")"
    detail += (" in fp32: prepare_model_for_kbit_training upcasts every non-quantised parameter"
               if framework.kbit_fp32_rest else " stay 16-bit")
    return MemoryPart("base_weights", f"Base weights ({dtype})", int(weights + rest * rest_size), detail, (CUDA_QUANTISED_RULE,))


def _adafactor_floats(arch: Architecture, count: ParamCount) -> int:
    """Second-moment floats of transformers' Adafactor: rows + columns per trained matrix, a vector in full."""
    floats = sum((item.r * item.experts + item.in_features) + (item.out_features + item.r * item.experts)
                 + item.extra_params for item in count.adapted)
    for name, _ in count.saved_modules:  # a modules_to_save copy trains every parameter under its module
        floats += sum(_factored(param.shape) for param in arch.subtree_tensors(name))
    return floats + count.trainable_bias


def _factored(shape: tuple[int, ...]) -> int:
    """Adafactor's floats for one tensor: a row and a column statistic over its last two dimensions, or every element."""
    if len(shape) < 2:
        return math.prod(shape)
    return math.prod(shape[:-1]) + math.prod(shape[:-2]) * shape[-1]


def _adapter_parts(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, framework: Framework) -> list[MemoryPart]:
    lora = sum(item.trainable for item in count.adapted)
    other = count.trainable - lora  # modules_to_save copies and unfrozen biases, kept in the base dtype
    frozen_lora = sum(item.lora_params + item.extra_params - item.trainable for item in count.adapted)
    other_size = 4 if training.base_dtype == "fp32" else 2
    size = 4 if training.base_dtype == "fp32" else framework.adapter_bytes
    weights = (lora + frozen_lora) * size + other * other_size
    grads = lora * size + other * other_size
    state = OPTIMIZER_STATE_BYTES[training.optim]
    if state is None:
        optimizer = _adafactor_floats(arch, count) * 4
        optimizer_detail = ("Adafactor (transformers): a factored second moment, rows + columns of each trained matrix "
                            "and every element of a vector, in fp32 whatever the parameter's dtype")
    else:
        # AdamW keeps two moments in the parameter's own dtype, Adagrad and RMSprop one; 8-bit variants one byte each
        per_param = state // 4 * size if state in (4, 8) else state
        optimizer = lora * per_param + other * (state // 4 * other_size if state in (4, 8) else state)
        optimizer_detail = f"{per_param} bytes per trainable parameter ({training.optim}, {size}-byte adapters)"
        if training.optim.startswith("paged_"):
            optimizer_detail += ("; paged: the states live in CUDA unified memory and move to CPU RAM only under "
                                 "pressure, so they are counted as resident")
    saved = ""
    if other:
        saved = f"; {other:,} parameters of modules_to_save copies and biases train in the base dtype"
    where = ("peft upcasts adapters" if size == 4 and training.base_dtype != "fp32" else f"{framework.label} keeps the model dtype")
    return [
        MemoryPart("adapter_weights", "LoRA weights", weights,
                   f"{lora + frozen_lora:,} adapter parameters x {size} bytes ({where}){saved}"),
        MemoryPart("gradients", "Gradients", grads, "one gradient per trainable parameter, same dtype as the parameter"),
        MemoryPart("optimizer", "Optimizer states", optimizer, optimizer_detail),
    ]


CPU_PROCESS_BYTES = 420 * 1024**2  # resident set of Python with torch, transformers and peft imported (measured)
CPU_HEAP_RETENTION = 1.0  # glibc keeps freed heap: peak RSS runs about one activation peak above live tensors

_ATTN_IN = frozenset({"q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv"})
_MLP_IN = frozenset({"gate_proj", "up_proj", "gate_up_proj", "c_fc", "w1", "w3", "fc1"})


def _input_of(template: str) -> str:
    """Which tensor of the layer an adapted module reads: modules reading the same tensor can share its saved copy."""
    parent, _, leaf = template.rpartition(".")
    parent = parent.rpartition(".")[2]
    if leaf in _ATTN_IN:
        return "attn_in"
    if leaf in ("o_proj", "dense", "out_proj") or (leaf == "c_proj" and parent == "attn"):
        return "attn_out"
    if leaf in _MLP_IN:
        return "mlp_in"
    if leaf in ("down_proj", "w2", "fc2") or (leaf == "c_proj" and parent == "mlp"):
        return "mlp_act"
    return template  # unknown: assume it reads a tensor of its own


@dataclass(frozen=True)
class ActivationEstimate:
    """What autograd keeps for the backward pass, derived op by op from the architecture (bytes)."""

    act_bytes: int  # bytes per activation element: 4 (fp32) or 2 (bf16/fp16)
    cpu: bool  # a CPU run (peak resident set): fp32 base weights unless the caller knows the run's device
    per_token: dict[str, float]  # one decoder layer, bytes per token, by term
    per_layer_fixed: float  # one decoder layer, bytes independent of the tokens (target_parameters' W' copies)
    score_per_token: float  # one decoder layer, bytes per token per key position (eager attention only)
    outside_per_token: float  # outside the decoder layers, bytes per token
    layer_input_per_token: float  # what checkpointing keeps per layer and token: the layer's input
    first_layer_saving: float  # bytes per token layer 0 does not keep: its input has no grad (frozen embedding)
    layers: int
    tokens: int
    seq: int
    checkpointing: bool
    vocab: int
    loss_tokens: int = 0  # positions whose logits are computed; 0 means every token
    logit_bytes: int = LOGIT_BYTES
    offload_checkpoints: bool = False  # checkpointed layer inputs wait in CPU memory (Unsloth)
    dora_per_token: float = 0.0  # DoRA's extra saved bytes per token over all layers

    @property
    def layer_per_token(self) -> float:
        """One layer's saved bytes per token at this sequence length."""
        return sum(self.per_token.values()) + self.score_per_token * self.seq

    @property
    def one_layer(self) -> float:
        """One layer's saved bytes for the whole micro-batch."""
        return self.tokens * self.layer_per_token + self.per_layer_fixed

    @property
    def saved_layers(self) -> float:
        """Bytes the decoder layers keep at the end of the forward pass."""
        if self.checkpointing:  # layer inputs, then one layer at a time is recomputed
            kept = 1 if self.offload_checkpoints else self.layers
            # while the recomputed layer runs backward, the gradient from the layer above and the layer's recomputed
            # output (torch.autograd.backward(outputs, grads) in the checkpoint's backward) are alive beside it
            in_flight = 2 * self.tokens * self.layer_input_per_token
            recompute = self.one_layer + in_flight
            if not self.cpu:
                # the loss's backward frees the logits before the last layer is recomputed, and the caching allocator
                # reuses their blocks: the peak is the larger of the two, so only the recompute's excess is added
                recompute = max(0.0, recompute - self.logits_peak)
            return (kept * self.tokens * self.layer_input_per_token + recompute
                    + self.tokens * self.dora_per_token / max(self.layers, 1))
        return self.layers * self.one_layer - self.tokens * self.first_layer_saving + self.tokens * self.dora_per_token

    @property
    def activations(self) -> int:
        """Decoder layers plus what the final norm and the loss indexing keep (the log-probs are in `logits_saved`)."""
        return int(self.saved_layers + self.tokens * self.outside_per_token)

    @property
    def logit_tokens(self) -> int:
        """Positions projected onto the vocabulary."""
        return self.loss_tokens or self.tokens

    @property
    def logits_saved(self) -> int:
        """The fp32 log-probs log_softmax keeps for the backward pass."""
        return self.logit_tokens * self.vocab * 4

    @property
    def logits_peak(self) -> int:
        """The loss's backward peak: with a plain fp32 loss, log-probs, their gradient and the logits' gradient."""
        return self.logit_tokens * self.vocab * self.logit_bytes


def fp32_residual_stream(training: CalcTrainingSpec, cpu: bool) -> bool:
    """True when the layers pass fp32 between them over a 16-bit compute dtype: a k-bit base prepared by peft.

    prepare_model_for_kbit_training leaves the norms' weights in fp32, so a norm's output is fp32, and bitsandbytes
    returns its product in its input's dtype (fms-acceleration's A100 runs: checkpointed layer inputs 4.295 GB above
    the same runs without the upcast, 32 layers x 16,384 tokens x 4,096 x 2 bytes).
    """
    return FRAMEWORKS[training.framework].kbit_fp32_rest and training.quantized and not cpu


def estimate_activations(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, dropout: float,
                         shape: BatchShape | None = None, use_dora: bool = False, cpu: bool | None = None) -> ActivationEstimate:
    """Per-architecture saved-tensor model of a decoder layer (pre-norm, SDPA, frozen base, LoRA in fp32).

    A frozen base Linear saves no activation (only its weight, for the input gradient). What is saved:
    RMSNorm upcasts to fp32 and keeps that fp32 input plus one rsqrt per token; SDPA keeps q and k after
    RoPE, v, its output and a fp32 logsumexp per head (k and v at the key/value heads' width: no mask,
    so transformers uses enable_gqa); SiLU keeps its input and the gate*up product keeps both factors;
    each LoRA branch keeps its (fp32) input for A's gradient and the r-dim A output for B's gradient.
    """
    a = _compute_bytes(training)
    if cpu is None:  # the calculator reads fp32 base weights as a CPU run: Lorapedia's CPU worker is the fp32 case
        cpu = training.base_dtype == "fp32"
    framework = FRAMEWORKS[training.framework]
    adapter = 4 if cpu else framework.adapter_bytes
    shape = shape or BatchShape.of(training)
    h, i = arch.hidden_size, arch.intermediate_size
    heads, q = arch.num_attention_heads, arch.num_attention_heads * arch.head_dim
    kv = arch.num_key_value_heads * arch.head_dim
    layer0 = [module for module in arch.modules if module.layer == 0] if arch.num_layers else []
    gpt2 = arch.model_type == "gpt2"
    eager = arch.model_type == "gemma2"  # logit soft-capping: SDPA refuses softcap, so eager attention
    fused_qkv = any(module.leaf == "qkv_proj" for module in layer0)
    mask = 4 if cpu else 1  # CPU dropout keeps a float noise tensor; CUDA's fused dropout a bool mask
    # Unsloth patches its LoRA kernels in only when lora_dropout is 0; otherwise peft's modules run
    fused = framework.fused_lora and not cpu and not dropout

    terms: dict[str, float] = {}
    norm_names = [m for m in layer0 if "norm" in m.cls.lower() and m.leaf not in ("q_norm", "k_norm")]
    per_norm = a * h + 8 if gpt2 else 4 * h + 4  # LayerNorm: input, mean, rstd; RMSNorm: fp32 input, rsqrt
    if fused:  # Unsloth's RMSNorm kernel keeps its 16-bit input and a fp32 inverse RMS
        per_norm = a * h + 4
    terms["norms"] = len(norm_names or [None, None]) * per_norm
    if any(m.leaf in ("q_norm", "k_norm") for m in layer0):
        terms["norms"] += 4 * (q + kv) + 4 * (heads + arch.num_key_value_heads)
    if eager:
        attention = a * 3 * q  # q, and k and v repeated to every query head
        score = heads * (4 + a + (a if a != 4 else 0))  # fp32 softmax, tanh soft-cap output, softmax cast back
    elif gpt2:
        attention = a * (3 * h + h) + 4 * heads  # q, k, v are views of c_attn's output; output; logsumexp
        score = 0
    else:
        v_storage = q + 2 * kv if fused_qkv else kv  # phi3: v is a view of qkv_proj's output
        attention = a * (2 * q + kv + v_storage) + 4 * heads  # q and k after RoPE, v, output, logsumexp
        score = 0
    terms["attention"] = attention
    if arch.num_experts:  # approximate: each routed expert keeps its gathered input and a gated MLP's tensors
        terms["mlp"] = arch.experts_per_token * a * (h + 4 * i) + 4 * arch.num_experts
    elif arch.gated_mlp:
        # gate output (activation input), activation output, up output; Unsloth's LoRA_MLP keeps gate and up and
        # its backward holds the down projection's input gradient beside them: three as well
        terms["mlp"] = 3 * a * i
    else:
        terms["mlp"] = a * i  # the activation's input
    if gpt2:
        terms["residual_dropout"] = 2 * h * mask  # resid_pdrop masks after attention and MLP

    per_layer = [item for item in count.adapted if item.layer is not None]
    layers = max(arch.num_layers, 1)
    # Inputs SDPA already keeps in the adapter's dtype: the attention output is a view of SDPA's output.
    shared = {"attn_out"} if a == adapter and not eager else set()
    # DoRA keeps, per adapted module and token, the base output (activation dtype) and the LoRA output (adapter dtype)
    dora = sum(item.out_features * (a + adapter) for item in per_layer if item.kind != PARAMETER) if use_dora else 0.0
    lora_inputs = 0.0
    seen: set[str] = set()
    fixed = 0.0
    rank = 0.0
    for item in per_layer:
        if item.kind == PARAMETER:  # W' = W + BA is rebuilt and kept for the backward pass
            fixed += item.experts * item.in_features * item.out_features * a
            continue
        source = _input_of(item.template)
        if fused:  # LoRA_QKV, LoRA_W, LoRA_MLP keep one 16-bit X per group; down_proj's input is rebuilt from gate, up
            if (item.layer, source) not in seen and source != "mlp_act":
                lora_inputs += item.in_features * a
            seen.add((item.layer, source))
            continue
        rank += adapter * item.r * item.experts
        if dropout:  # each module draws its own mask and keeps its own dropped (fp32) copy
            lora_inputs += item.in_features * (adapter + mask)
        elif a != adapter:  # each module casts the 16-bit input to fp32 on its own
            lora_inputs += item.in_features * adapter
        elif (item.layer, source) not in seen and source not in shared:
            lora_inputs += item.in_features * adapter
        seen.add((item.layer, source))
    terms["lora_inputs"] = lora_inputs / layers
    terms["lora_rank"] = rank / layers

    # The embedding output needs no gradient when the embedding is frozen, so the first norm keeps nothing and the
    # first LoRA dropouts keep no mask: autograd saves a tensor only for a gradient someone needs.
    embedding_trains = any(item.name == arch.input_embedding for item in count.adapted) or any(
        name == arch.input_embedding or arch.input_embedding.startswith(name + ".") for name, _ in count.saved_modules
    )
    first = 0.0
    if not embedding_trains and not gpt2:
        first_sources = {_input_of(item.template) for item in per_layer if item.layer == 0 and item.kind != PARAMETER}
        first = per_norm + sum(
            item.in_features * mask for item in per_layer
            if dropout and item.layer == 0 and item.kind != PARAMETER and _input_of(item.template) == "attn_in"
        )
        if "attn_in" not in first_sources and not eager:  # q, k, v need no gradient: attention keeps nothing ...
            first += attention
            if "attn_out" in first_sources and "attn_out" in shared and not dropout:
                first -= a * q  # ... but o_proj's LoRA keeps the attention output
    outside = (a * h + 8 if gpt2 else per_norm) + 9  # final norm; target index (int64) and mask (bool)
    stream = 4 if fp32_residual_stream(training, cpu) else a
    for item in count.adapted:
        if item.layer is None and item.kind != PARAMETER:
            outside += adapter * item.r + (adapter * item.in_features if item.kind != EMBEDDING else 0)
    if any(name == arch.output_layer for name, _ in count.saved_modules):
        outside += a * h  # a trained copy of the output layer keeps its input for its weight's gradient
    return ActivationEstimate(
        act_bytes=a, cpu=cpu, per_token=terms, per_layer_fixed=fixed / layers, score_per_token=score,
        outside_per_token=outside, layer_input_per_token=stream * h, first_layer_saving=first, layers=arch.num_layers,
        tokens=shape.tokens, seq=shape.width, checkpointing=training.gradient_checkpointing, vocab=arch.vocab_size,
        loss_tokens=shape.loss_tokens, logit_bytes=4 * 3 if cpu else framework.logit_bytes,
        offload_checkpoints=framework.offload_checkpoints and training.gradient_checkpointing and not cpu,
        dora_per_token=dora,
    )


def _activations(estimate: ActivationEstimate, dropout: float) -> list[MemoryPart]:
    size = estimate.act_bytes
    cuda_rules = () if estimate.cpu else (CUDA_ATTENTION_RULE, *((CUDA_DROPOUT_RULE,) if dropout else ()))
    terms = ", ".join(f"{key.replace('_', ' ')} {value:,.0f}" for key, value in estimate.per_token.items() if value)
    per_layer = f"{estimate.layer_per_token:,.0f} bytes per token per layer ({terms}"
    if estimate.score_per_token:
        per_layer += f", eager attention scores {estimate.score_per_token * estimate.seq:,.0f}"
    per_layer += ")"
    if estimate.per_layer_fixed:
        per_layer += f" + {estimate.per_layer_fixed:,.0f} bytes per layer of rebuilt target_parameters weights"
    if estimate.checkpointing:
        detail = (
            f"checkpointing: each of {estimate.layers} layers keeps only its input ({estimate.layer_input_per_token:,.0f} "
            f"bytes per token), plus one layer recomputed at a time{'' if estimate.cpu else ', beyond what the logits freed'}: "
            f"{per_layer}"
        )
    else:
        detail = f"{estimate.layers} layers x {estimate.tokens:,} tokens x {per_layer}"
    detail += f"; outside the layers {estimate.outside_per_token:,.0f} bytes per token (final norm, loss indices)"
    if estimate.dora_per_token:
        detail += f"; DoRA keeps {estimate.dora_per_token:,.0f} more bytes per token over all layers (base and LoRA outputs)"
    if estimate.offload_checkpoints:
        detail += "; the checkpointed layer inputs wait in CPU memory, one layer's on the GPU"
    if estimate.logit_tokens != estimate.tokens:
        logit_detail = f"{estimate.logit_tokens:,} loss positions (of {estimate.tokens:,} tokens)"
    else:
        logit_detail = f"{estimate.tokens:,} tokens"
    logit_detail += f" x {estimate.vocab:,} vocabulary x {estimate.logit_bytes} bytes"
    if not estimate.logit_bytes:
        logit_detail = ("no logits kept: the output layer and the loss run fused in blocks (Cut Cross-Entropy), "
                        f"{estimate.logit_tokens:,} loss positions never projected onto all {estimate.vocab:,} at once")
    if estimate.logit_bytes == LOGIT_BYTES:
        logit_detail += (": in log_softmax's backward the fp32 log-probs, their gradient and the logits' gradient are alive "
                         f"together (the {size}-byte logits and their fp32 copy are freed after the forward pass)")
    return [
        MemoryPart("activations", "Activations", estimate.activations, detail, cuda_rules),
        MemoryPart("logits", "Logits and loss", estimate.logits_peak, logit_detail),
    ]


def _workspaces(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, framework: Framework,
                use_dora: bool, act_bytes: int) -> list[MemoryPart]:
    """Short-lived buffers at the peak: a dequantised 4-bit weight, DoRA's weight-norm matrices."""
    parts = []
    if training.base_dtype in ("nf4", "fp4", "int8"):
        largest = max((m.in_features * m.out_features for m in _quantized_modules(arch, count, framework)), default=0)
        parts.append(MemoryPart(
            "dequant", "Dequantisation buffer", largest * act_bytes,
            f"bitsandbytes dequantises one weight at a time to {act_bytes * 8}-bit for each matmul (forward and backward): "
            f"the largest quantised Linear, {largest:,} weights"))
    if use_dora:
        modules = [item for item in count.adapted if item.kind != PARAMETER]
        largest = max((item.in_features * (item.in_features + 2 * item.out_features) for item in modules), default=0)
        parts.append(MemoryPart(
            "dora_norm", "DoRA weight norm", largest * 4,
            "peft rebuilds B·A through an identity matrix (in x in) and the full W + sBA (out x in) per module and forward "
            "to take the column norms; the largest module's set, fp32"))
    return parts


def approximation_note(arch: Architecture) -> str:
    """Why the estimate is rougher for a model that is not a decoder-only LM; empty for one that is."""
    if arch.task == "causal-lm":
        return ""
    return (f"Approximate for this {arch.task} model: activations are derived as for a decoder-only language model's "
            "layers from the text sizes in config.json; an encoder's bidirectional layers, a seq2seq model's encoder "
            "and cross-attention and a vision tower's image tokens are not modelled one by one.")


def estimate_memory(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, lora_dropout: float,
                    shape: BatchShape | None = None, use_dora: bool = False, cpu: bool | None = None) -> MemoryEstimate:
    """Per-device memory of one training step: weights, adapter state, activations, workspaces, allocator and context."""
    framework = FRAMEWORKS[training.framework]
    saved = estimate_activations(arch, count, training, lora_dropout, shape, use_dora, cpu)
    parts = [_base_weights(arch, count, training, framework), *_adapter_parts(arch, count, training, framework),
             *_activations(saved, lora_dropout), *_workspaces(arch, count, training, framework, use_dora, saved.act_bytes)]
    live = sum(part.bytes for part in parts)
    if saved.cpu:
        retained = int((saved.activations + saved.logits_peak) * CPU_HEAP_RETENTION)
        parts.append(MemoryPart(
            "heap_retained", "Freed heap kept by malloc", retained,
            f"{CPU_HEAP_RETENTION:.0%} of the activation peak: glibc malloc keeps freed heap mapped, so RSS stays high"))
        parts.append(MemoryPart(
            "process", "Python process", CPU_PROCESS_BYTES,
            f"{CPU_PROCESS_BYTES / GIB:.2f} GiB resident for Python with torch and transformers loaded (measured)"))
        allocated, reserved, total, basis = live, live + retained, live + retained + CPU_PROCESS_BYTES, CPU_BASIS
    else:
        # weights, adapters and optimizer states are allocated once and hold their blocks; the slack comes from the
        # tensors each step makes and frees in varying sizes, so a 4-bit base (small weights) shows a larger
        # reserved/allocated ratio than the same run in bf16 (1.30 against 1.14 in fms-acceleration's Mistral-7B runs)
        short_lived = sum(part.bytes for part in parts if part.key not in PERSISTENT_PARTS)
        slack = int(short_lived * FRAGMENTATION)
        parts.append(MemoryPart(
            "allocator", "Allocator reserve", slack,
            f"{FRAGMENTATION:.0%} of the {short_lived / GIB:,.2f} GiB a step allocates and frees (activations, logits, "
            "gradients, workspaces): blocks PyTorch's caching allocator keeps reserved but cannot reuse at the peak "
            "(fragmentation, 2 MiB segments). Weights, adapters and optimizer states are allocated once and add none. "
            "The fraction is fitted on 18 published single-GPU runs (fms-acceleration's A100 benchmark, bf16, "
            "4-bit and GPTQ bases; their median is 0.26)", (CUDA_FRAGMENTATION_RULE,)))
        parts.append(MemoryPart(
            "context", "CUDA context", FRAMEWORK_BYTES,
            f"{FRAMEWORK_BYTES / GIB:.1f} GiB for the CUDA context, cuBLAS workspaces and kernels: outside PyTorch's "
            "allocator, inside what nvidia-smi shows", (CUDA_CONTEXT_RULE,)))
        allocated, reserved, basis = live, live + slack, GPU_BASIS
        total = reserved + FRAMEWORK_BYTES
    size = saved.act_bytes
    assumptions = [
        "An estimate, not a measurement: compare with a real run's peak memory on the job page.",
        "Data parallel: every device holds the whole model, so the figures are per device.",
        f"Activations are {size}-byte ({'fp32' if size == 4 else '16-bit'}) as the base weights compute; "
        + ("this is read as a CPU run (fp32 base weights, or a job the worker trains on CPU)."
           if saved.cpu else "16-bit and quantised base weights are read as a CUDA run."),
        "Activations are derived per layer from config.json (hidden, intermediate, heads, key/value heads, layers) by "
        "what autograd saves: a frozen base Linear keeps no activation; RMSNorm keeps its input upcast to fp32 and one "
        "rsqrt per token; SDPA keeps q and k after RoPE, v, its output and a fp32 logsumexp per head; SiLU keeps "
        "its input and gate*up keeps both factors; each LoRA branch keeps its fp32 input and its r-dim A output.",
        "Attention runs through SDPA/FlashAttention with no attention mask (unpacked, right-padded batches), so the "
        "seq x seq score matrix is never kept and grouped-query k/v stay at the key/value heads' width. Eager "
        "attention (Gemma 2's soft-capping) adds heads x seq x (4 + 2 x activation bytes) per token per layer; "
        "a mask (packed sequences) makes transformers repeat k/v to every query head.",
        "peft keeps adapters in fp32 and casts each adapted module's input to fp32: with 16-bit activations every "
        "adapted module keeps its own fp32 copy of its input; in fp32 modules reading the same tensor share it.",
        "Logits are taken for every token (b x s x vocabulary), as transformers' loss does; Lorapedia's own runs "
        "project only the target positions, so masked prompt tokens shrink that part in proportion.",
        "Gradients and optimizer states are counted at their full size, although the gradients only appear after "
        "the logits' backward peak: a small overestimate for LoRA.",
        "Adapters train in fp32 (peft's default autocast); modules_to_save copies and biases keep the base dtype.",
    ]
    unmeasured = [rule for part in parts for rule in part.not_measured_on_gpu]
    if unmeasured:
        assumptions.append(f"CUDA-only rules, {NOT_MEASURED_ON_GPU}: " + "; ".join(unmeasured) + ".")
    if training.gradient_checkpointing:
        assumptions.append(
            "Gradient checkpointing keeps each layer's input and recomputes one layer at a time. "
            + ("On CPU that layer's working set is added to the logits' peak (freed heap stays resident). " if saved.cpu else
               "On CUDA the loss's backward frees the logits before the last layer is recomputed and the caching allocator "
               "reuses their blocks, so only what the recomputed layer needs beyond the logits' peak is added. ")
            + ("prepare_model_for_kbit_training keeps the norms in fp32 and bitsandbytes answers in its input's dtype, so "
               "the layer inputs are fp32 (4 bytes) between the 4-bit layers." if fp32_residual_stream(training, saved.cpu) else "")
        )
    if saved.cpu:
        assumptions.append(
            "On CPU the peak is the process's resident set: glibc malloc serves tensors below its dynamic mmap "
            "threshold (up to 32 MiB) from the heap and keeps freed heap mapped, so peak RSS ran 0.7-1.3 activation "
            "peaks above the live tensors on SmolLM2-135M (bench/bench_memory_prediction.py)."
        )
    if approximation_note(arch):
        assumptions.append(approximation_note(arch))
    if arch.model_type == "gpt2":
        assumptions.append(
            "GPT-2: the activations are low. Its tanh GELU is computed op by op and keeps four intermediate-width "
            "tensors where one is counted, and its config's attention and embedding dropouts keep masks; on a shrunk "
            "GPT-2 autograd saved 1.4-2.2 times this activation figure (2026-12-03).")
    if arch.num_experts:
        assumptions.append("Mixture of experts: each routed expert is taken to keep its gathered input and a gated "
                           "MLP's tensors; the router keeps fp32 probabilities. Approximate.")
    if training.quantized:
        assumptions.append(
            "bitsandbytes quantises nn.Linear (and Conv1D) layers except the output layer; embeddings, norms and "
            "the output layer stay in 16 bit."
        )
    if lora_dropout:
        assumptions.append(
            "lora_dropout > 0: each adapted module keeps its own dropped fp32 copy of its input and its mask "
            f"({'a float noise tensor on CPU' if saved.cpu else 'one byte per element with CUDA fused dropout'})."
        )
    assumptions += _framework_assumptions(training, framework, saved, use_dora)
    return MemoryEstimate(parts=parts, total_bytes=total, assumptions=assumptions, allocated_bytes=allocated,
                          reserved_bytes=reserved, basis=basis)


def _framework_assumptions(training: CalcTrainingSpec, framework: Framework, saved: ActivationEstimate,
                           use_dora: bool) -> list[str]:
    """What the framework choice, the data's lengths, DoRA and the optimizer add to the picture."""
    lines = [f"Framework {framework.label}: loss by {framework.loss}; adapters and optimizer states in "
             f"{'fp32' if framework.adapter_bytes == 4 else 'bf16'}. Source: {framework.source}."]
    if training.typical_seq_length is not None and not training.packing:
        lines.append(f"Sequences are padded to the longest in each micro-batch: the peak batch is taken to be "
                     f"{saved.seq:,} tokens wide (typical_seq_length), not max_seq_length.")
    if use_dora:
        lines.append("DoRA: the weight norm is detached (peft, as the DoRA paper's section 4.3), so no full-size "
                     "gradient is kept; each adapted module keeps its base output and LoRA output per token.")
    if training.optim.startswith("paged_"):
        lines.append("Paged optimizer: bitsandbytes allocates the states in CUDA unified memory, evicted to CPU RAM "
                     "only when the GPU runs short; they are counted as resident, so a tight fit may still run.")
    if training.quantized and framework.kbit_fp32_rest:
        lines.append("prepare_model_for_kbit_training (transformers + peft, Axolotl) upcasts the embeddings, norms and "
                     "output layer to fp32; it also turns gradient checkpointing on unless told not to.")
    return lines
