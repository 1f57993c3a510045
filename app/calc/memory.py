"""Training memory estimate per device, as a breakdown with the assumption behind each part."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.calc.architecture import CONV1D, LINEAR, Architecture
from app.calc.trainable import PARAMETER, ParamCount
from app.calc.training_spec import TrainingSpec

GIB = 1024**3
FRAMEWORK_BYTES = GIB // 2  # CUDA context, cuBLAS workspace, kernels: a common observed floor
FRAGMENTATION = 0.10  # caching-allocator slack on top of the live tensors
OPTIMIZER_STATE_BYTES = {  # per fp32 trainable parameter
    "adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8,
    "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0, "adafactor": None,
}
SOURCES = (
    "QLoRA, Dettmers et al. 2023 (arXiv 2305.14314): NF4 with one fp32 absmax per 64 weights; double "
    "quantisation stores it in 8 bits with one fp32 per 256 blocks (0.127 bit per weight)",
    "LLM.int8(), Dettmers et al. 2022 (arXiv 2208.07339): int8 weights with one fp32 scale per output row",
    "Reducing Activation Recomputation in Large Transformer Models, Korthikanti et al. 2022 (arXiv 2205.05198)",
    "8-bit Optimizers via Block-wise Quantization, Dettmers et al. 2021 (arXiv 2110.02861)",
)


@dataclass(frozen=True)
class MemoryPart:
    """One component of the estimate."""

    key: str
    label: str
    bytes: int
    detail: str


@dataclass
class MemoryEstimate:
    """Per-device memory for one training step, with the assumptions stated."""

    parts: list[MemoryPart]
    total_bytes: int
    assumptions: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = SOURCES


def _compute_bytes(training: TrainingSpec) -> int:
    """Bytes per activation element: fp32 stays fp32, everything else computes in 16 bit."""
    return 4 if training.base_dtype == "fp32" else 2


def _base_weights(arch: Architecture, training: TrainingSpec) -> MemoryPart:
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
    return MemoryPart("base_weights", f"Base weights ({dtype})", int(weights + rest * 2), detail)


def _adapter_parts(count: ParamCount, training: TrainingSpec) -> list[MemoryPart]:
    lora = sum(item.trainable for item in count.adapted)
    other = count.trainable - lora  # modules_to_save copies and unfrozen biases, kept in the base dtype
    frozen_lora = sum(item.lora_params + item.extra_params - item.trainable for item in count.adapted)
    other_size = 4 if training.base_dtype == "fp32" else 2
    weights = (lora + frozen_lora) * 4 + other * other_size
    grads = lora * 4 + other * other_size
    state = OPTIMIZER_STATE_BYTES[training.optimizer]
    if state is None:
        factored = sum(
            (item.r * item.experts + item.in_features) + (item.out_features + item.r * item.experts) + item.extra_params
            for item in count.adapted
        )
        optimizer = factored * 4 + other * other_size
        optimizer_detail = "Adafactor: factored second moment, about rows + columns per matrix, fp32"
    else:
        # AdamW keeps two moments in the parameter's own dtype; 8-bit variants one byte each
        optimizer = lora * state + other * (2 * other_size if state == 8 else state)
        optimizer_detail = f"{state} bytes per fp32 trainable parameter ({training.optimizer})"
    saved = ""
    if other:
        saved = f"; {other:,} parameters of modules_to_save copies and biases train in the base dtype"
    return [
        MemoryPart("adapter_weights", "LoRA weights", weights,
                   f"{lora + frozen_lora:,} adapter parameters in fp32 (peft upcasts adapters){saved}"),
        MemoryPart("gradients", "Gradients", grads, "one gradient per trainable parameter, same dtype as the parameter"),
        MemoryPart("optimizer", "Optimizer states", optimizer, optimizer_detail),
    ]


def _layer_activation_bytes(arch: Architecture, count: ParamCount, dropout: float, size: int) -> float:
    """Bytes one decoder layer keeps per token for the backward pass (SDPA attention: no score matrix)."""
    h, i = arch.hidden_size, arch.intermediate_size
    q_dim = arch.num_attention_heads * arch.head_dim
    kv_dim = arch.num_key_value_heads * arch.head_dim
    attention = 2 * h + 2 * q_dim + 2 * kv_dim  # norm input, q/k/v input, q, k, v, attention output
    if arch.num_experts:
        mlp = 2 * h + arch.experts_per_token * 4 * i + arch.num_experts
    else:
        mlp = 2 * h + (4 * i if arch.gated_mlp else 2 * i)
    per_layer = [item for item in count.adapted if item.layer is not None]
    layers = max(arch.num_layers, 1)
    lora = sum(item.r * item.experts for item in per_layer) / layers
    dropped = sum(item.in_features for item in per_layer if item.kind != PARAMETER) / layers if dropout else 0
    return (attention + mlp + lora + dropped) * size + dropped  # + one byte per dropout mask element


def _activations(arch: Architecture, count: ParamCount, training: TrainingSpec, dropout: float) -> list[MemoryPart]:
    size = _compute_bytes(training)
    tokens = training.per_device_train_batch_size * training.max_seq_length
    layer = _layer_activation_bytes(arch, count, dropout, size)
    if training.gradient_checkpointing:
        activations = arch.num_layers * tokens * arch.hidden_size * size + tokens * layer
        detail = (
            f"checkpointing: each of {arch.num_layers} layers keeps only its input ({arch.hidden_size} values per token), "
            "plus one layer's activations while it is recomputed"
        )
    else:
        activations = arch.num_layers * tokens * layer
        detail = f"{arch.num_layers} layers x {tokens:,} tokens x about {layer:,.0f} bytes per token per layer"
    logits = tokens * arch.vocab_size * (size + 8)
    return [
        MemoryPart("activations", "Activations", int(activations), detail),
        MemoryPart(
            "logits", "Logits and loss", int(logits),
            f"{tokens:,} tokens x {arch.vocab_size:,} vocabulary: the output in {size}-byte precision, its fp32 "
            "copy for the loss, and that copy's gradient",
        ),
    ]


def estimate_memory(arch: Architecture, count: ParamCount, training: TrainingSpec, lora_dropout: float) -> MemoryEstimate:
    """Per-device memory of one training step: weights, adapter state, activations, overhead."""
    parts = [_base_weights(arch, training), *_adapter_parts(count, training), *_activations(arch, count, training, lora_dropout)]
    live = sum(part.bytes for part in parts)
    overhead = int(FRAMEWORK_BYTES + live * FRAGMENTATION)
    parts.append(MemoryPart(
        "overhead", "Framework overhead", overhead,
        "0.5 GiB for the CUDA context and workspaces + 10% of the above for allocator fragmentation",
    ))
    assumptions = [
        "An estimate, not a measurement: compare with a real run's peak memory on the job page.",
        "Data parallel: every device holds the whole model, so the figures are per device.",
        "Attention runs through SDPA/FlashAttention, which does not keep the seq x seq score matrix.",
        "Activation sizes follow what autograd saves per layer (after Korthikanti et al.), generalised to gated "
        "MLPs, grouped-query attention and LoRA's rank-r intermediates; calibrate against measurements.",
        "Adapters train in fp32 (peft's default autocast); modules_to_save copies and biases keep the base dtype.",
    ]
    if training.quantized:
        assumptions.append(
            "bitsandbytes quantises nn.Linear (and Conv1D) layers except the output layer; embeddings, norms and "
            "the output layer stay in 16 bit."
        )
    if lora_dropout:
        assumptions.append("lora_dropout > 0 keeps a dropped copy of each adapted layer's input, plus its mask.")
    return MemoryEstimate(parts=parts, total_bytes=live + overhead, assumptions=assumptions)
