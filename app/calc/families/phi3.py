"""Phi-3: llama-like, but q/k/v fused into qkv_proj and gate/up fused into gate_up_proj."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture
from app.calc.families.config_fields import decoder_sizes, optional_str
from app.calc.families.tree import TreeBuilder, activation_class


def build_phi3(config: dict[str, Any]) -> Architecture:
    """The module tree of Phi3ForCausalLM."""
    sizes = decoder_sizes(config)
    hidden, intermediate, head_dim = sizes.hidden, sizes.intermediate, sizes.head_dim
    heads, kv_heads = sizes.heads, sizes.kv_heads
    act = activation_class(optional_str(config, "hidden_act") or "silu")

    tree = TreeBuilder()
    tree.decoder_start("Phi3", sizes)
    for index in range(sizes.layers):
        base = f"model.layers.{index}"
        tree.add(base, "Phi3DecoderLayer")
        tree.add(f"{base}.self_attn", "Phi3Attention")
        # transformers registers o_proj before qkv_proj in Phi3Attention
        tree.linear(f"{base}.self_attn.o_proj", heads * head_dim, hidden, bias=False)
        tree.linear(f"{base}.self_attn.qkv_proj", hidden, (heads + 2 * kv_heads) * head_dim, bias=False)
        tree.add(f"{base}.mlp", "Phi3MLP")
        tree.linear(f"{base}.mlp.gate_up_proj", hidden, 2 * intermediate, bias=False)
        tree.linear(f"{base}.mlp.down_proj", intermediate, hidden, bias=False)
        tree.add(f"{base}.mlp.activation_fn", act)
        tree.norm(f"{base}.input_layernorm", "Phi3RMSNorm", hidden)
        tree.norm(f"{base}.post_attention_layernorm", "Phi3RMSNorm", hidden)
        tree.add(f"{base}.resid_attn_dropout", "Dropout")
        tree.add(f"{base}.resid_mlp_dropout", "Dropout")
    tree.decoder_end("Phi3", sizes)

    return tree.architecture("phi3", "phi3 (fused qkv_proj, gate_up_proj)", sizes)
