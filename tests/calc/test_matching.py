"""Name matching equals peft's own functions on the same keys."""

from __future__ import annotations

import peft
import pytest
from peft.tuners import tuners_utils
from peft.utils import other

from app.calc.matching import is_excluded, layer_index, pattern_key, shielded_by_modules_to_save, target_matches


KEYS = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.11.mlp.down_proj",
    "transformer.h.3.attn.c_attn",
    "lm_head",
    "model.embed_tokens",
    "model.layers.1.mlp.experts.gate_up_proj",
]
CONFIGS = [
    dict(target_modules=["q_proj", "down_proj"]),
    dict(target_modules=["self_attn.q_proj", "lm_head"]),
    dict(target_modules=["q_proj", "c_attn", "lm_head"], layers_to_transform=[0, 3]),
    dict(target_modules=["q_proj", "down_proj"], layers_to_transform=11, layers_pattern="layers"),
    dict(target_modules=["c_attn"], layers_to_transform=[3], layers_pattern=["blocks", "h"]),
    dict(target_modules=r".*\.(q_proj|c_attn)"),
    dict(target_modules=["q_proj", "down_proj"], exclude_modules=["down_proj"]),
    dict(target_modules=["q_proj", "embed_tokens"], exclude_modules=r".*layers\.0\..*"),
    dict(target_modules=["q_proj", "embed_tokens"], modules_to_save=["embed_tokens"]),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("key", KEYS)
def test_target_match_equals_peft(config, key):
    peft_config = peft.LoraConfig(**config)
    expected = bool(tuners_utils.check_target_module_exists(peft_config, key))
    excluded = is_excluded(peft_config.exclude_modules, key) or shielded_by_modules_to_save(config.get("modules_to_save"), key)
    ours = not excluded and target_matches(
        peft_config.target_modules, key, config.get("layers_to_transform"), config.get("layers_pattern")
    )
    assert ours == expected


@pytest.mark.parametrize("patterns", [
    ["q_proj"], [r"layers\.0\..*", "q_proj"], ["proj"], [r".*\.gate_up_proj"], ["self_attn.q_proj"],
    # plain names are found by lookup, regexes in order: the first key in order still wins
    ["lm_head", "down_proj", r".*_proj", "q_proj"], [r".*layers\.11\..*", "down_proj"], ["gate_up_proj", r".*\.experts\..*"],
    ["model.layers.0.self_attn.q_proj", "q_proj", "embed_tokens", "c_attn"],
])
@pytest.mark.parametrize("key", KEYS)
def test_pattern_key_equals_peft(patterns, key):
    expected = other.get_pattern_key(patterns, key)
    ours = pattern_key(patterns, key)
    assert (ours if ours is not None else key) == expected


@pytest.mark.parametrize(
    ("key", "pattern", "index"),
    [
        ("model.layers.7.self_attn.q_proj", None, 7),
        ("model.layers.1.mlp.experts.0.w1", None, 1),
        ("transformer.h.10.attn.c_attn", "h", 10),
        ("lm_head", None, None),
        ("model.layers.2", None, None),
        ("model.layers.2.mlp", None, 2),
    ],
)
def test_layer_index(key, pattern, index):
    assert layer_index(key, pattern) == index
