"""Target resolution: peft's per-model defaults (from the tree), all-linear, and the MoE rewrite of transformers 5."""

from __future__ import annotations

import pytest

from app.spec.errors import FieldError
from app.spec.lora import LoraSpec
from app.calc.targets import resolve_targets
from tests.calc.peft_oracle import architecture_of, catalogue_config, shallow


def test_phi3_without_targets_names_the_field():
    arch = architecture_of(catalogue_config("phi-3-mini"))
    with pytest.raises(FieldError) as caught:
        resolve_targets(LoraSpec(), arch)
    assert caught.value.loc == ("lora", "target_modules")


@pytest.mark.parametrize(
    ("lora", "modules", "parameters", "rank_pattern"),
    [
        (dict(target_modules=["q_proj", "w1", "w3"]), {"q_proj"}, {"gate_up_proj"}, {r".*\.gate_up_proj": 16}),
        (dict(target_modules=["w2", "gate"]), set(), {"down_proj", "gate.weight"}, {}),
        (dict(target_modules="all-linear"), {"q_proj", "k_proj", "v_proj", "o_proj"}, {"gate_up_proj", "down_proj", "gate.weight"}, {r".*\.gate_up_proj": 16}),
        (dict(target_modules=None), set(), set(), {}),
    ],
)
def test_mixtral_v4_names_become_parameters(lora, modules, parameters, rank_pattern):
    arch = architecture_of(shallow(catalogue_config("mixtral-8x7b")))
    resolved = resolve_targets(LoraSpec(r=8, **lora), arch)
    assert set(resolved.target_modules) == modules
    assert set(resolved.target_parameters) == parameters
    assert resolved.rank_pattern == rank_pattern


def test_all_linear_skips_the_output_layer():
    arch = architecture_of(catalogue_config("gpt2"))
    resolved = resolve_targets(LoraSpec(target_modules="ALL-LINEAR"), arch)
    assert "lm_head" not in resolved.target_modules
    assert len(resolved.target_modules) == 4 * 12
