"""Phi-3: llama-like, but q/k/v fused into qkv_proj and gate/up fused into gate_up_proj."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture
from app.calc.families.config_fields import optional_bool, optional_int, require_int
from app.calc.families.tree import TreeBuilder, activation_class


def build_phi3(config: dict[str, Any]) -> Architecture:
    """The module tree of Phi3ForCausalLM."""
    hidden = require_int(config, "hidden_size")
    intermediate = require_int(config, "intermediate_size")
    layers = require_int(config, "num_hidden_layers")
    heads = require_int(config, "num_attention_heads")
    vocab = require_int(config, "vocab_size")
    kv_heads = optional_int(config, "num_key_value_heads", heads)
    head_dim = optional_int(config, "head_dim", hidden // heads)
    tie = optional_bool(config, "tie_word_embeddings", False)
    act = activation_class(config.get("hidden_act", "silu"))

    tree = TreeBuilder()
    tree.add("model", "Phi3Model")
    tree.embedding("model.embed_tokens", vocab, hidden)
    tree.add("model.layers", "ModuleList")
    for index in range(layers):
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
    tree.norm("model.norm", "Phi3RMSNorm", hidden)
    tree.add("model.rotary_emb", "Phi3RotaryEmbedding")
    tree.linear("lm_head", hidden, vocab, bias=False, tied_to="model.embed_tokens.weight" if tie else None)

    return Architecture(
        model_type="phi3",
        family="phi3 (fused qkv_proj, gate_up_proj)",
        modules=tree.build(),
        output_layer="lm_head",
        input_embedding="model.embed_tokens",
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        tie_word_embeddings=tie,
    )
