"""GPT-2: Conv1D projections (weights stored transposed), learned position embeddings, LayerNorm with bias."""

from __future__ import annotations

from typing import Any

from app.calc.architecture import Architecture
from app.spec.errors import FieldError
from app.calc.families.config_fields import (
    LAYERS_REASON,
    LOC,
    MAX_LAYERS,
    DecoderSizes,
    optional_bool,
    optional_int,
    optional_str,
    require_int,
)
from app.calc.families.tree import TreeBuilder, activation_class


def build_gpt2(config: dict[str, Any]) -> Architecture:
    """The module tree of GPT2LMHeadModel."""
    hidden = require_int(config, "n_embd")
    layers = require_int(config, "n_layer", maximum=MAX_LAYERS, reason=LAYERS_REASON)
    heads = require_int(config, "n_head")
    if hidden % heads:
        raise FieldError(
            (LOC, "n_head"), f"n_embd ({hidden}) must be divisible by n_head ({heads}), as GPT-2's attention requires",
            "multiple_of",
        )
    vocab = require_int(config, "vocab_size")
    positions = require_int(config, "n_positions")
    inner = optional_int(config, "n_inner", 4 * hidden)
    tie = optional_bool(config, "tie_word_embeddings", True)
    act = activation_class(optional_str(config, "activation_function") or "gelu_new")

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

    sizes = DecoderSizes(hidden, inner, layers, heads, heads, hidden // heads, vocab, tie)
    return tree.architecture(
        "gpt2",
        "gpt2 (Conv1D)",
        sizes,
        input_embedding="transformer.wte",
        gated_mlp=False,
        notes=(
            "GPT-2 uses transformers' Conv1D, which stores weights as (in, out); peft forces fan_in_fan_out=True "
            "for it and counts r*(in+out) as for nn.Linear.",
        ),
    )
