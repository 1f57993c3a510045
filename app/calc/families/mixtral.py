"""Mixtral: llama-like attention; the MLP is a router plus experts stored as two 3-D parameters (transformers 5)."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture, Param
from app.calc.families.config_fields import decoder_sizes, optional_int, optional_str, require_int
from app.calc.families.tree import TreeBuilder, activation_class


def build_mixtral(config: dict[str, Any]) -> Architecture:
    """The module tree of MixtralForCausalLM as transformers 5 builds it (fused experts)."""
    sizes = decoder_sizes(config)
    hidden, intermediate = sizes.hidden, sizes.intermediate
    experts = require_int(config, "num_local_experts")
    per_token = optional_int(config, "num_experts_per_tok", 2)
    act = activation_class(optional_str(config, "hidden_act") or "silu")

    tree = TreeBuilder()
    tree.decoder_start("Mixtral", sizes)
    for index in range(sizes.layers):
        base = f"model.layers.{index}"
        tree.add(base, "MixtralDecoderLayer")
        tree.attention(base, "MixtralAttention", sizes)
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
    tree.decoder_end("Mixtral", sizes)

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
