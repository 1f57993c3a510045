"""Mixtral: llama-like attention; the MLP is a router plus experts stored as two 3-D parameters (transformers 5)."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture, Param
from app.calc.families.config_fields import optional_bool, optional_int, require_int
from app.calc.families.tree import TreeBuilder, activation_class


def build_mixtral(config: dict[str, Any]) -> Architecture:
    """The module tree of MixtralForCausalLM as transformers 5 builds it (fused experts)."""
    hidden = require_int(config, "hidden_size")
    intermediate = require_int(config, "intermediate_size")
    layers = require_int(config, "num_hidden_layers")
    heads = require_int(config, "num_attention_heads")
    vocab = require_int(config, "vocab_size")
    experts = require_int(config, "num_local_experts")
    per_token = optional_int(config, "num_experts_per_tok", 2)
    kv_heads = optional_int(config, "num_key_value_heads", heads)
    head_dim = optional_int(config, "head_dim", hidden // heads)
    tie = optional_bool(config, "tie_word_embeddings", False)
    act = activation_class(config.get("hidden_act", "silu"))

    tree = TreeBuilder()
    tree.add("model", "MixtralModel")
    tree.embedding("model.embed_tokens", vocab, hidden)
    tree.add("model.layers", "ModuleList")
    for index in range(layers):
        base = f"model.layers.{index}"
        tree.add(base, "MixtralDecoderLayer")
        tree.add(f"{base}.self_attn", "MixtralAttention")
        tree.linear(f"{base}.self_attn.q_proj", hidden, heads * head_dim, bias=False)
        tree.linear(f"{base}.self_attn.k_proj", hidden, kv_heads * head_dim, bias=False)
        tree.linear(f"{base}.self_attn.v_proj", hidden, kv_heads * head_dim, bias=False)
        tree.linear(f"{base}.self_attn.o_proj", heads * head_dim, hidden, bias=False)
        tree.add(f"{base}.mlp", "MixtralSparseMoeBlock")
        tree.add(f"{base}.mlp.gate", "MixtralTopKRouter", (Param("weight", (experts, hidden)),))
        tree.add(
            f"{base}.mlp.experts",
            "MixtralExperts",
            (
                Param("gate_up_proj", (experts, 2 * intermediate, hidden)),
                Param("down_proj", (experts, hidden, intermediate)),
            ),
        )
        tree.add(f"{base}.mlp.experts.act_fn", act)
        tree.norm(f"{base}.input_layernorm", "MixtralRMSNorm", hidden)
        tree.norm(f"{base}.post_attention_layernorm", "MixtralRMSNorm", hidden)
    tree.norm("model.norm", "MixtralRMSNorm", hidden)
    tree.add("model.rotary_emb", "MixtralRotaryEmbedding")
    tree.linear("lm_head", hidden, vocab, bias=False, tied_to="model.embed_tokens.weight" if tie else None)

    return Architecture(
        model_type="mixtral",
        family="mixtral (mixture of experts)",
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
        num_experts=experts,
        experts_per_token=per_token,
        notes=(
            "transformers 5 stores each layer's experts as two 3-D parameters (gate_up_proj, down_proj) and the "
            "router as a plain parameter: none of them is an nn.Linear, so peft reaches them through "
            "target_parameters. peft 0.21 rewrites the old names w1/w3/w2/gate into those parameters for you.",
        ),
    )
