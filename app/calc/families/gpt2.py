"""GPT-2: Conv1D projections (weights stored transposed), learned position embeddings, LayerNorm with bias."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture
from app.calc.families.config_fields import optional_bool, optional_int, require_int
from app.calc.families.tree import TreeBuilder, activation_class


def build_gpt2(config: dict[str, Any]) -> Architecture:
    """The module tree of GPT2LMHeadModel."""
    hidden = require_int(config, "n_embd")
    layers = require_int(config, "n_layer")
    heads = require_int(config, "n_head")
    vocab = require_int(config, "vocab_size")
    positions = require_int(config, "n_positions")
    inner = optional_int(config, "n_inner", 4 * hidden)
    tie = optional_bool(config, "tie_word_embeddings", True)
    act = activation_class(config.get("activation_function", "gelu_new"))

    tree = TreeBuilder()
    tree.add("transformer", "GPT2Model")
    tree.embedding("transformer.wte", vocab, hidden)
    tree.embedding("transformer.wpe", positions, hidden)
    tree.add("transformer.drop", "Dropout")
    tree.add("transformer.h", "ModuleList")
    for index in range(layers):
        base = f"transformer.h.{index}"
        tree.add(base, "GPT2Block")
        tree.norm(f"{base}.ln_1", "LayerNorm", hidden, bias=True)
        tree.add(f"{base}.attn", "GPT2Attention")
        tree.conv1d(f"{base}.attn.c_attn", hidden, 3 * hidden)
        tree.conv1d(f"{base}.attn.c_proj", hidden, hidden)
        tree.add(f"{base}.attn.attn_dropout", "Dropout")
        tree.add(f"{base}.attn.resid_dropout", "Dropout")
        tree.norm(f"{base}.ln_2", "LayerNorm", hidden, bias=True)
        tree.add(f"{base}.mlp", "GPT2MLP")
        tree.conv1d(f"{base}.mlp.c_fc", hidden, inner)
        tree.conv1d(f"{base}.mlp.c_proj", inner, hidden)
        tree.add(f"{base}.mlp.act", act)
        tree.add(f"{base}.mlp.dropout", "Dropout")
    tree.norm("transformer.ln_f", "LayerNorm", hidden, bias=True)
    tree.linear("lm_head", hidden, vocab, bias=False, tied_to="transformer.wte.weight" if tie else None)

    return Architecture(
        model_type="gpt2",
        family="gpt2 (Conv1D)",
        modules=tree.build(),
        output_layer="lm_head",
        input_embedding="transformer.wte",
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=inner,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        gated_mlp=False,
        notes=(
            "GPT-2 uses transformers' Conv1D, which stores weights as (in, out); peft forces fan_in_fan_out=True "
            "for it and counts r*(in+out) as for nn.Linear.",
        ),
    )
