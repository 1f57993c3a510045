"""Training memory estimate per device, as a breakdown with the assumption behind each part."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.calc.architecture import CONV1D, EMBEDDING, LINEAR, Architecture
from app.calc.trainable import PARAMETER, ParamCount
from app.spec.training import CalcTrainingSpec

GIB = 1024**3
FRAMEWORK_BYTES = GIB // 2  # CUDA context, cuBLAS workspace, kernels: a common observed floor
FRAGMENTATION = 0.10  # caching-allocator slack on top of the live tensors
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
)


# Rules that apply only to a CUDA run and that no GPU run has measured yet (this project's machines have no GPU;
# bench/device_check.py measures them where one is lent). Each part lists the ones its figure rests on.
NOT_MEASURED_ON_GPU = "not measured on a GPU yet"
CUDA_CONTEXT_RULE = "0.5 GiB for the CUDA context, cuBLAS workspace and kernels"
CUDA_FRAGMENTATION_RULE = "10% caching-allocator slack on top of the live tensors"
CUDA_DROPOUT_RULE = "CUDA's fused dropout keeps a one-byte mask per element"
CUDA_ATTENTION_RULE = "CUDA's SDPA kernels keep what the CPU kernel keeps (q, k, v, output, logsumexp)"
CUDA_QUANTISED_RULE = "bitsandbytes' layouts: 4-bit weights with block constants, int8 weights with row scales"


@dataclass(frozen=True)
class MemoryPart:
    """One component of the estimate."""

    key: str
    label: str
    bytes: int
    detail: str
    not_measured_on_gpu: tuple[str, ...] = ()  # the CUDA-only rules this figure rests on


@dataclass
class MemoryEstimate:
    """Per-device memory for one training step, with the assumptions stated."""

    parts: list[MemoryPart]
    total_bytes: int
    assumptions: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = SOURCES


def _compute_bytes(training: CalcTrainingSpec) -> int:
    """Bytes per activation element: fp32 stays fp32, everything else computes in 16 bit."""
    return 4 if training.base_dtype == "fp32" else 2


def _base_weights(arch: Architecture, training: CalcTrainingSpec) -> MemoryPart:
    dtype = training.base_dtype
    if dtype in ("fp32", "bf16", "fp16"):
        size = 4 if dtype == "fp32" else 2
        return MemoryPart("base_weights", f"Base weights ({dtype})", arch.base_params * size,
                          f"{arch.base_params:,} parameters x {size} bytes")
    quantizable = [
        module for module in arch.modules if module.kind in (LINEAR, CONV1D) and module.name != arch.output_layer
    ]
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
    detail += f"; {rest:,} other parameters (embeddings, norms, output layer, biases"
    detail += ", fused experts)" if arch.num_experts else ")"
    detail += " stay 16-bit"
    return MemoryPart("base_weights", f"Base weights ({dtype})", int(weights + rest * 2), detail, (CUDA_QUANTISED_RULE,))


def _adapter_parts(count: ParamCount, training: CalcTrainingSpec) -> list[MemoryPart]:
    lora = sum(item.trainable for item in count.adapted)
    other = count.trainable - lora  # modules_to_save copies and unfrozen biases, kept in the base dtype
    frozen_lora = sum(item.lora_params + item.extra_params - item.trainable for item in count.adapted)
    other_size = 4 if training.base_dtype == "fp32" else 2
    weights = (lora + frozen_lora) * 4 + other * other_size
    grads = lora * 4 + other * other_size
    state = OPTIMIZER_STATE_BYTES[training.optim]
    if state is None:
        factored = sum(
            (item.r * item.experts + item.in_features) + (item.out_features + item.r * item.experts) + item.extra_params
            for item in count.adapted
        )
        optimizer = factored * 4 + other * other_size
        optimizer_detail = "Adafactor: factored second moment, about rows + columns per matrix, fp32"
    else:
        # AdamW keeps two moments in the parameter's own dtype, Adagrad and RMSprop one; 8-bit variants one byte each
        optimizer = lora * state + other * (state // 4 * other_size if state in (4, 8) else state)
        optimizer_detail = f"{state} bytes per fp32 trainable parameter ({training.optim})"
    saved = ""
    if other:
        saved = f"; {other:,} parameters of modules_to_save copies and biases train in the base dtype"
    return [
        MemoryPart("adapter_weights", "LoRA weights", weights,
                   f"{lora + frozen_lora:,} adapter parameters in fp32 (peft upcasts adapters){saved}"),
        MemoryPart("gradients", "Gradients", grads, "one gradient per trainable parameter, same dtype as the parameter"),
        MemoryPart("optimizer", "Optimizer states", optimizer, optimizer_detail),
    ]


ADAPTER_BYTES = 4  # peft upcasts adapter weights to fp32 (autocast_adapter_dtype) and casts their input to match
LOGIT_BYTES = 12  # per token x vocabulary entry at the backward peak: log-probs, their gradient, the logits' gradient
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
    cpu: bool  # fp32 base weights are read as a CPU run (Lorapedia trains fp32 only on CPU)
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
            return self.layers * self.tokens * self.layer_input_per_token + self.one_layer
        return self.layers * self.one_layer - self.tokens * self.first_layer_saving

    @property
    def activations(self) -> int:
        """Decoder layers plus what the final norm and the loss indexing keep (the log-probs are in `logits_saved`)."""
        return int(self.saved_layers + self.tokens * self.outside_per_token)

    @property
    def logits_saved(self) -> int:
        """The fp32 log-probs log_softmax keeps for the backward pass."""
        return self.tokens * self.vocab * 4

    @property
    def logits_peak(self) -> int:
        """Log-probs, their gradient and the logits' gradient, all fp32, alive together in log_softmax's backward."""
        return self.tokens * self.vocab * LOGIT_BYTES


def estimate_activations(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, dropout: float) -> ActivationEstimate:
    """Per-architecture saved-tensor model of a decoder layer (pre-norm, SDPA, frozen base, LoRA in fp32).

    A frozen base Linear saves no activation (only its weight, for the input gradient). What is saved:
    RMSNorm upcasts to fp32 and keeps that fp32 input plus one rsqrt per token; SDPA keeps q and k after
    RoPE, v, its output and a fp32 logsumexp per head (k and v at the key/value heads' width: no mask,
    so transformers uses enable_gqa); SiLU keeps its input and the gate*up product keeps both factors;
    each LoRA branch keeps its (fp32) input for A's gradient and the r-dim A output for B's gradient.
    """
    a = _compute_bytes(training)
    cpu = training.base_dtype == "fp32"
    h, i = arch.hidden_size, arch.intermediate_size
    heads, q = arch.num_attention_heads, arch.num_attention_heads * arch.head_dim
    kv = arch.num_key_value_heads * arch.head_dim
    layer0 = [module for module in arch.modules if module.layer == 0] if arch.num_layers else []
    gpt2 = arch.model_type == "gpt2"
    eager = arch.model_type == "gemma2"  # logit soft-capping: SDPA refuses softcap, so eager attention
    fused_qkv = any(module.leaf == "qkv_proj" for module in layer0)
    mask = 4 if cpu else 1  # CPU dropout keeps a float noise tensor; CUDA's fused dropout a bool mask

    terms: dict[str, float] = {}
    norm_names = [m for m in layer0 if "norm" in m.cls.lower() and m.leaf not in ("q_norm", "k_norm")]
    per_norm = a * h + 8 if gpt2 else 4 * h + 4  # LayerNorm: input, mean, rstd; RMSNorm: fp32 input, rsqrt
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
        terms["mlp"] = 3 * a * i  # gate output (activation input), activation output, up output
    else:
        terms["mlp"] = a * i  # the activation's input
    if gpt2:
        terms["residual_dropout"] = 2 * h * mask  # resid_pdrop masks after attention and MLP

    per_layer = [item for item in count.adapted if item.layer is not None]
    layers = max(arch.num_layers, 1)
    # Inputs SDPA already keeps in the adapter's dtype: the attention output is a view of SDPA's output.
    shared = {"attn_out"} if a == ADAPTER_BYTES and not eager else set()
    lora_inputs = 0.0
    seen: set[str] = set()
    fixed = 0.0
    rank = 0.0
    for item in per_layer:
        if item.kind == PARAMETER:  # W' = W + BA is rebuilt and kept for the backward pass
            fixed += item.experts * item.in_features * item.out_features * a
            continue
        rank += ADAPTER_BYTES * item.r * item.experts
        source = _input_of(item.template)
        if dropout:  # each module draws its own mask and keeps its own dropped (fp32) copy
            lora_inputs += item.in_features * (ADAPTER_BYTES + mask)
        elif a != ADAPTER_BYTES:  # each module casts the 16-bit input to fp32 on its own
            lora_inputs += item.in_features * ADAPTER_BYTES
        elif (item.layer, source) not in seen and source not in shared:
            lora_inputs += item.in_features * ADAPTER_BYTES
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
    outside = (a * h + 8 if gpt2 else 4 * h + 4) + 9  # final norm; target index (int64) and mask (bool)
    for item in count.adapted:
        if item.layer is None and item.kind != PARAMETER:
            outside += ADAPTER_BYTES * item.r + (ADAPTER_BYTES * item.in_features if item.kind != EMBEDDING else 0)
    return ActivationEstimate(
        act_bytes=a, cpu=cpu, per_token=terms, per_layer_fixed=fixed / layers, score_per_token=score,
        outside_per_token=outside, layer_input_per_token=a * h, first_layer_saving=first, layers=arch.num_layers,
        tokens=training.per_device_train_batch_size * training.max_seq_length, seq=training.max_seq_length,
        checkpointing=training.gradient_checkpointing, vocab=arch.vocab_size,
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
            f"bytes per token), plus one layer recomputed at a time: {per_layer}"
        )
    else:
        detail = f"{estimate.layers} layers x {estimate.tokens:,} tokens x {per_layer}"
    detail += f"; outside the layers {estimate.outside_per_token:,.0f} bytes per token (final norm, loss indices)"
    return [
        MemoryPart("activations", "Activations", estimate.activations, detail, cuda_rules),
        MemoryPart(
            "logits", "Logits and loss", estimate.logits_peak,
            f"{estimate.tokens:,} tokens x {estimate.vocab:,} vocabulary x {LOGIT_BYTES} bytes: in log_softmax's backward "
            f"the fp32 log-probs, their gradient and the logits' gradient are alive together (the {size}-byte logits "
            "and their fp32 copy are freed after the forward pass)",
        ),
    ]


def estimate_memory(arch: Architecture, count: ParamCount, training: CalcTrainingSpec, lora_dropout: float) -> MemoryEstimate:
    """Per-device memory of one training step: weights, adapter state, activations, overhead."""
    saved = estimate_activations(arch, count, training, lora_dropout)
    parts = [_base_weights(arch, training), *_adapter_parts(count, training), *_activations(saved, lora_dropout)]
    live = sum(part.bytes for part in parts)
    if saved.cpu:
        retained = (saved.activations + saved.logits_peak) * CPU_HEAP_RETENTION
        overhead = int(CPU_PROCESS_BYTES + retained)
        overhead_detail = (
            f"CPU run (fp32): {CPU_PROCESS_BYTES / GIB:.2f} GiB resident for Python with torch and transformers loaded, "
            f"+ {CPU_HEAP_RETENTION:.0%} of the activation peak that glibc malloc keeps mapped after tensors are freed"
        )
    else:
        overhead = int(FRAMEWORK_BYTES + live * FRAGMENTATION)
        overhead_detail = "0.5 GiB for the CUDA context and workspaces + 10% of the above for allocator fragmentation"
    cuda_rules = () if saved.cpu else (CUDA_CONTEXT_RULE, CUDA_FRAGMENTATION_RULE)
    parts.append(MemoryPart("overhead", "Framework overhead", overhead, overhead_detail, cuda_rules))
    size = saved.act_bytes
    assumptions = [
        "An estimate, not a measurement: compare with a real run's peak memory on the job page.",
        "Data parallel: every device holds the whole model, so the figures are per device.",
        f"Activations are {size}-byte ({'fp32' if size == 4 else '16-bit'}) as the base weights compute; "
        + ("fp32 base weights are read as a CPU run, as Lorapedia trains without a bf16 GPU."
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
            "Gradient checkpointing keeps each layer's input in the activation dtype and recomputes one layer at a "
            "time; that layer's working set is added to the logits' peak, although the two are not alive together."
        )
    if saved.cpu:
        assumptions.append(
            "On CPU the peak is the process's resident set: glibc malloc serves tensors below its dynamic mmap "
            "threshold (up to 32 MiB) from the heap and keeps freed heap mapped, so peak RSS ran 0.7-1.3 activation "
            "peaks above the live tensors on SmolLM2-135M (bench/bench_memory_prediction.py)."
        )
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
    return MemoryEstimate(parts=parts, total_bytes=live + overhead, assumptions=assumptions)
