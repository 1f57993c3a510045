"""Llama-like decoders (llama, mistral, qwen2, qwen3, gemma, gemma2): embed, N x (attention, gated MLP, norms), lm_head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.calc.architecture import Architecture
from app.calc.families.config_fields import decoder_sizes, optional_bool, optional_str
from app.calc.families.tree import TreeBuilder, activation_class


@dataclass(frozen=True)
class LlamaLikeVariant:
    """What differs between the llama-like model types in transformers."""

    prefix: str  # class-name prefix: Llama, Mistral, ...
    qkv_bias: str  # "config" (attention_bias), "always" or "never"
    o_bias: str
    mlp_bias_from_config: bool = False
    head_dim_default: int | None = None  # None: hidden_size // num_attention_heads
    tie_default: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False  # gemma2: pre/post feed-forward norms
    scaled_embedding: bool = False
    activation_key: str = "hidden_act"


VARIANTS: dict[str, LlamaLikeVariant] = {
    "llama": LlamaLikeVariant("Llama", "config", "config", mlp_bias_from_config=True),
    "mistral": LlamaLikeVariant("Mistral", "never", "never"),
    "qwen2": LlamaLikeVariant("Qwen2", "always", "never"),
    "qwen3": LlamaLikeVariant("Qwen3", "config", "config", head_dim_default=128, qk_norm=True),
    "gemma": LlamaLikeVariant("Gemma", "config", "config", head_dim_default=256, tie_default=True, scaled_embedding=True),
    "gemma2": LlamaLikeVariant(
        "Gemma2", "config", "config", head_dim_default=256, tie_default=True, sandwich_norms=True,
        scaled_embedding=True,
    ),
}


def _bias(rule: str, attention_bias: bool) -> bool:
    return {"config": attention_bias, "always": True, "never": False}[rule]


def build_llama_like(config: dict[str, Any]) -> Architecture:
    """The module tree of a llama-like causal LM."""
    model_type = config["model_type"]
    variant = VARIANTS[model_type]
    p = variant.prefix
    sizes = decoder_sizes(config, head_dim_default=variant.head_dim_default, tie_default=variant.tie_default)
    hidden, intermediate = sizes.hidden, sizes.intermediate
    attention_bias = optional_bool(config, "attention_bias", False)
    mlp_bias = optional_bool(config, "mlp_bias", False) if variant.mlp_bias_from_config else False
    qkv_bias = _bias(variant.qkv_bias, attention_bias)
    o_bias = _bias(variant.o_bias, attention_bias)
    act = activation_class(optional_str(config, variant.activation_key) or optional_str(config, "hidden_act") or "silu")

    tree = TreeBuilder()
    tree.decoder_start(p, sizes, f"{p}TextScaledWordEmbedding" if variant.scaled_embedding else "Embedding")
    for index in range(sizes.layers):
        base = f"model.layers.{index}"
        tree.add(base, f"{p}DecoderLayer")
        tree.attention(base, f"{p}Attention", sizes, qkv_bias=qkv_bias, o_bias=o_bias)
        if variant.qk_norm:
            tree.norm(f"{base}.self_attn.q_norm", f"{p}RMSNorm", sizes.head_dim)
            tree.norm(f"{base}.self_attn.k_norm", f"{p}RMSNorm", sizes.head_dim)
        tree.add(f"{base}.mlp", f"{p}MLP")
        tree.linear(f"{base}.mlp.gate_proj", hidden, intermediate, bias=mlp_bias)
        tree.linear(f"{base}.mlp.up_proj", hidden, intermediate, bias=mlp_bias)
        tree.linear(f"{base}.mlp.down_proj", intermediate, hidden, bias=mlp_bias)
        tree.add(f"{base}.mlp.act_fn", act)
        tree.norm(f"{base}.input_layernorm", f"{p}RMSNorm", hidden)
        tree.norm(f"{base}.post_attention_layernorm", f"{p}RMSNorm", hidden)
        if variant.sandwich_norms:
            tree.norm(f"{base}.pre_feedforward_layernorm", f"{p}RMSNorm", hidden)
            tree.norm(f"{base}.post_feedforward_layernorm", f"{p}RMSNorm", hidden)
    tree.decoder_end(p, sizes)

    return tree.architecture(model_type, "llama-like", sizes)
