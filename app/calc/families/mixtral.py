"""Mixtral: llama-like attention; the MLP is a router plus experts stored as two 3-D parameters (transformers 5)."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture, Param
from app.calc.families.config_fields import decoder_sizes, optional_int, optional_str, require_int
from app.calc.families.tree import TreeBuilder, activation_class


def build_mixtral(config: dict[str, Any]) -> Architecture:
    """The module tree of MixtralForCausalLM as transformers 5 builds it (fused experts)."""
    sizes = decoder_sizes(config)
    hidden, intermediate, head_dim = sizes.hidden, sizes.intermediate, sizes.head_dim
    heads, kv_heads = sizes.heads, sizes.kv_heads
    experts = require_int(config, "num_local_experts")
    per_token = optional_int(config, "num_experts_per_tok", 2)
    act = activation_class(optional_str(config, "hidden_act") or "silu")

    tree = TreeBuilder()
    tree.add("model", "MixtralModel")
    tree.embedding("model.embed_tokens", sizes.vocab, hidden)
    tree.add("model.layers", "ModuleList")
    for index in range(sizes.layers):
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
    tree.linear("lm_head", hidden, sizes.vocab, bias=False, tied_to="model.embed_tokens.weight" if sizes.tie else None)

    return tree.architecture(
        "mixtral",
        "mixtral (mixture of experts)",
        sizes,
        num_experts=experts,
        experts_per_token=per_token,
        notes=(
            "transformers 5 stores each layer's experts as two 3-D parameters (gate_up_proj, down_proj) and the "
            "router as a plain parameter: none of them is an nn.Linear, so peft reaches them through "
            "target_parameters. peft 0.21 rewrites the old names w1/w3/w2/gate into those parameters for you.",
        ),
    )
