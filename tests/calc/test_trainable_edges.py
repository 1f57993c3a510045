"""Edges of the trainable count the per-model table misses, found by mutation testing (tests/MUTATION.md)."""

from __future__ import annotations

import pytest

from app.spec.errors import FieldError
from tests.calc.peft_oracle import architecture_of
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from tests.calc.peft_oracle import catalogue_config, peft_counts
from tests.calc.test_adapter_file import TINY_MIXTRAL
from tests.calc.test_trainable import assert_same_as_peft, calc_counts

TINY = catalogue_config("tiny-llama")


def test_exclusion_by_a_full_module_name_matches_peft():
    lora = dict(r=4, target_modules=["q_proj", "v_proj"], exclude_modules=["model.layers.0.self_attn.q_proj"])
    assert_same_as_peft(TINY, lora)
    assert calc_counts(TINY, lora)[0] == 4 * (64 + 64) + 2 * 4 * (64 + 32)  # q (64 to 64) in layer 1, v (64 to 32) in both


def test_a_modules_to_save_entry_that_is_also_a_target_is_refused_as_peft_refuses_it():
    # peft matches modules_to_save by plain suffix when it wraps, so "proj" wraps q_proj, which LoRA adapts
    lora = dict(r=4, target_modules=["q_proj"], modules_to_save=["proj"])
    assert assert_same_as_peft(TINY, lora) is not None, "peft accepted it: the refusal is no longer needed"
    with pytest.raises(FieldError) as error:
        calc_counts(TINY, lora)
    assert error.value.loc == ("lora", "modules_to_save")


@pytest.mark.parametrize(
    ("lora", "loc", "message"),
    [
        (dict(r=4, target_modules=["no_such_module", "nor_this"]), "target_modules",
         "target_modules ['no_such_module', 'nor_this'] match no module of this model"),
        (dict(r=4, target_modules=r".*\.nothing_here"), "target_modules", r"target_modules '.*\\.nothing_here' match no module"),
        (dict(r=4, target_modules=["q_proj"], exclude_modules=["q_proj"]), "target_modules", "no module is left to adapt"),
    ],
)
def test_a_configuration_that_adapts_nothing_says_why(lora, loc, message):
    with pytest.raises(FieldError) as error:
        count_trainable(LoraSpec(**lora), architecture_of(TINY))
    assert error.value.loc == ("lora", loc) and error.value.message.startswith(message)


def test_wrapped_expert_parameters_are_grouped_by_their_name_within_the_layer():
    lora = dict(r=4, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj", "experts.down_proj"])
    count = count_trainable(LoraSpec(**lora), architecture_of(TINY_MIXTRAL))
    assert {item.template for item in count.adapted} == {"self_attn.q_proj", "mlp.experts.gate_up_proj", "mlp.experts.down_proj"}

