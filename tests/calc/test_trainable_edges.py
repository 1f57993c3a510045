"""Edges of the trainable count the per-model table misses, found by mutation testing (tests/MUTATION.md)."""

from __future__ import annotations

import warnings

import pytest
from peft import LoraConfig, get_peft_model

from app.spec.errors import FieldError
from tests.calc.peft_oracle import architecture_of
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from tests.calc.peft_oracle import catalogue_config, meta_model, peft_counts
from tests.calc.test_any_architecture import SMALL
from tests.calc.test_adapter_file import TINY_MIXTRAL
from tests.calc.test_trainable import assert_same_as_peft, calc_counts

TINY = catalogue_config("tiny-llama")


def test_exclusion_by_a_full_module_name_matches_peft():
    lora = dict(r=4, target_modules=["q_proj", "v_proj"], exclude_modules=["model.layers.0.self_attn.q_proj"])
    assert_same_as_peft(TINY, lora)
    assert calc_counts(TINY, lora)[0] == 4 * (64 + 64) + 2 * 4 * (64 + 32)  # q (64 to 64) in layer 1, v (64 to 32) in both
    assert not count_trainable(LoraSpec(**lora), architecture_of(TINY)).excluded_nothing, "the full name did exclude"


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
        (dict(r=4, target_modules=["q_proj"], exclude_modules=".*"), "exclude_modules", "every targeted module is excluded"),
        (dict(r=4, target_modules=[], target_parameters=["no_such.weight"]), "target_modules",
         "no target_modules and no target_parameters reach this model"),
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



@pytest.mark.parametrize(("model_type", "lora"), [
    # a 16x16 patch embedding: lora_A carries the whole kernel, lora_B is 1x1
    ("gemma3", dict(r=4, target_modules=["patch_embedding"])),
    # Mamba's depthwise Conv1d (kernel 4, groups = channels): lora_B is grouped too
    ("jamba", dict(r=64, target_modules=["conv1d"])),
])
def test_convolutions_with_a_kernel_wider_than_one_match_peft(model_type, lora):
    config = dict(SMALL, model_type=model_type)
    expected = peft_counts(config, lora)
    count = count_trainable(LoraSpec(**lora), architecture_of(config))
    assert (count.trainable, count.total) == expected
    assert all(type(item.lora_params) is int for item in count.adapted), "a parameter count is a whole number, not a float"


@pytest.mark.parametrize("use_rslora", [False, True])
def test_each_adapted_modules_scaling_is_the_one_peft_gives_it(use_rslora):
    lora = dict(r=8, lora_alpha=12, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 2},
                alpha_pattern={"q_proj": 5}, use_rslora=use_rslora)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(meta_model(TINY), LoraConfig(**lora))
    count = count_trainable(LoraSpec(**lora), architecture_of(TINY))
    assert len(count.adapted) == 4
    for item in count.adapted:
        assert item.scaling == pytest.approx(peft_model.base_model.model.get_submodule(item.name).scaling["default"])


def test_a_module_peft_cannot_adapt_is_refused_with_target_parameters_offered_only_when_it_has_weights():
    with pytest.raises(FieldError) as norm:
        count_trainable(LoraSpec(r=4, target_modules=["input_layernorm"]), architecture_of(TINY))  # RMSNorm: a weight
    with pytest.raises(FieldError) as block:
        count_trainable(LoraSpec(r=4, target_modules=["mlp"]), architecture_of(TINY))  # a container: no weight of its own
    assert "use target_parameters for its weights" in norm.value.message
    assert "name its Linear children" in block.value.message and "target_parameters" not in block.value.message


@pytest.mark.parametrize(("exclude", "saved"), [(None, None), (["k_proj"], None), (["not_a_module"], None),
                                                # peft lists a module modules_to_save shields as excluded: no warning
                                                (["not_a_module"], ["lm_head"])])
def test_excluded_nothing_is_said_exactly_when_peft_warns_it(exclude, saved):
    lora = dict(r=4, target_modules=["q_proj", "v_proj"], exclude_modules=exclude, modules_to_save=saved)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_peft_model(meta_model(TINY), LoraConfig(**lora))
    peft_warned = any("exclude" in str(warning.message) for warning in caught)
    # the oracle itself: k_proj exists and is excluded; lm_head is shielded
    assert peft_warned == (exclude == ["not_a_module"] and saved is None)
    assert count_trainable(LoraSpec(**lora), architecture_of(TINY)).excluded_nothing == peft_warned


@pytest.mark.parametrize(("layers", "suffix"), [(None, ""), ([5], " in layers [5]")])
def test_targets_that_match_nothing_name_the_layers_only_when_layers_are_chosen(layers, suffix):
    lora = dict(r=4, target_modules=["q_proj", "no_such_module"] if layers else ["no_such_module"], layers_to_transform=layers)
    with pytest.raises(FieldError) as error:
        count_trainable(LoraSpec(**lora), architecture_of(TINY))  # tiny-llama has layers 0 and 1
    assert error.value.message == f"target_modules {sorted(lora['target_modules'])!r} match no module of this model{suffix}"


@pytest.mark.parametrize(("task_type", "task"), [("SEQ_CLS", "seq-cls"), ("TOKEN_CLS", "token-cls")])
def test_a_classifier_keeps_the_users_own_modules_to_save_beside_its_head(task_type, task):
    config = dict(SMALL, model_type="llama")
    lora = dict(r=4, target_modules=["q_proj"], task_type=task_type, modules_to_save=["embed_tokens"])
    count = count_trainable(LoraSpec(**lora), architecture_of(config, task))
    assert (count.trainable, count.total) == peft_counts(config, lora)
    assert {name.rsplit(".", 1)[-1] for name, _ in count.saved_modules} >= {"embed_tokens", "score"}


def test_one_module_left_unmatched_beside_the_excluded_ones_is_peft_mixed_case():
    # peft: "all excluded" only when nothing is left unmatched; a single unmatched module makes it the mixed case
    names = list(architecture_of(TINY).by_name)
    kept = next(name for name in names if not name.endswith("q_proj"))
    lora = dict(r=4, target_modules=["q_proj"], exclude_modules=[name for name in names if name != kept])
    with pytest.raises(FieldError) as error:
        count_trainable(LoraSpec(**lora), architecture_of(TINY))
    assert error.value.message.startswith("no module is left to adapt"), error.value.message


def test_lora_only_bias_of_a_module_adapted_through_its_parameter_matches_peft():
    config = dict(SMALL, model_type="qwen2")  # q_proj has a bias
    lora = dict(r=4, target_modules=[], target_parameters=["self_attn.q_proj.weight"], bias="lora_only")
    count = count_trainable(LoraSpec(**lora), architecture_of(config))
    assert (count.trainable, count.total) == peft_counts(config, lora)


def test_mica_trains_only_a_as_peft_does():
    lora = dict(r=4, target_modules=["q_proj"], init_lora_weights="mica")
    count = count_trainable(LoraSpec(**lora), architecture_of(TINY))
    # MiCA's SVD needs real weights: peft is run on the CPU, not the meta device
    assert (count.trainable, count.total) == peft_counts(TINY, lora, meta=False)


@pytest.mark.parametrize(
    ("config", "lora"),
    [
        (TINY, dict(r=4, target_modules=["q_proj", "v_proj", "down_proj"])),  # repeated layers: one row renamed per layer
        (TINY_MIXTRAL, dict(r=4, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj", "experts.down_proj"])),
    ],
    ids=["dense", "experts"],
)
def test_each_rows_rank_times_experts_is_the_height_of_peft_lora_a(config, lora):
    """The adapter file and the memory model read `r * experts`: it must be lora_A's rows in peft, module by module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(meta_model(config), LoraConfig(**lora))
    # peft nests the wrappers of one module's parameters (experts.base_layer...), so compare the multisets of shapes
    shapes = sorted(tuple(param.shape) for name, param in model.named_parameters() if name.endswith(".lora_A.default.weight"))
    count = count_trainable(LoraSpec(**lora), architecture_of(config))
    assert sorted((item.r * item.experts, item.in_features) for item in count.adapted) == shapes


def test_a_target_peft_refuses_on_this_model_type_is_refused_as_peft_refuses_it():
    config = dict(SMALL, model_type="mamba")  # peft refuses out_proj and conv1d on Mamba-based model types
    lora = dict(r=4, target_modules=["out_proj"])
    assert isinstance(assert_same_as_peft(config, lora), ValueError), "peft accepted it: the refusal is no longer needed"
    with pytest.raises(FieldError) as error:
        count_trainable(LoraSpec(**lora), architecture_of(config))
    assert error.value.loc == ("lora", "target_modules") and error.value.kind == "unsupported_target"
    assert "out_proj" in error.value.message


def test_modules_to_save_matching_a_module_and_one_inside_it_is_refused():
    lora = dict(r=4, target_modules=["q_proj"], modules_to_save=["mlp", "mlp.down_proj"])
    with pytest.raises(FieldError) as error:
        count_trainable(LoraSpec(**lora), architecture_of(TINY))
    assert error.value.loc == ("lora", "modules_to_save") and error.value.kind == "conflict"
    assert "model.layers.0.mlp" in error.value.message and "model.layers.0.mlp.down_proj inside it" in error.value.message
