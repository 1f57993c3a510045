"""app.calc's trainable count equals peft's get_nb_trainable_parameters(), exactly, on every catalogue model."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.calc.catalogue import load_catalogue
from app.spec.errors import FieldError
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from tests.calc.peft_oracle import architecture_of, catalogue_config, peft_counts, shallow

HEAVY = {"llama-3.1-70b", "mixtral-8x7b"}

# Names each family uses, so one table of LoRA configs can run on every model.
NAMES = {
    "llama": dict(attn=["q_proj", "v_proj"], mlp=["down_proj"], embed="embed_tokens", layers="layers"),
    "phi3": dict(attn=["qkv_proj"], mlp=["down_proj"], embed="embed_tokens", layers="layers"),
    "gpt2": dict(attn=["c_attn"], mlp=["c_fc"], embed="wte", layers="h"),
    "mixtral": dict(attn=["q_proj", "v_proj"], mlp=[], embed="embed_tokens", layers="layers"),
}


def names_for(config: dict[str, Any]) -> dict[str, Any]:
    """The NAMES entry for a config's model_type."""
    return NAMES.get(config["model_type"], NAMES["llama"])


Case = Callable[[dict[str, Any]], dict[str, Any]]
CASES: dict[str, Case] = {
    "plain": lambda n: dict(r=8, lora_alpha=16, target_modules=n["attn"]),
    "peft-default-targets": lambda n: dict(r=4),
    "dora": lambda n: dict(r=16, lora_alpha=32, target_modules=n["attn"] + n["mlp"], use_dora=True),
    "rslora": lambda n: dict(r=16, lora_alpha=32, use_rslora=True, target_modules=n["attn"] + n["mlp"]),
    "rank-and-alpha-pattern": lambda n: dict(
        r=8, target_modules=n["attn"] + n["mlp"],
        rank_pattern={n["attn"][0]: 4, rf"{n['layers']}\.1\..*": 2}, alpha_pattern={n["attn"][0]: 32},
    ),
    "layers-to-transform": lambda n: dict(r=8, target_modules=n["attn"] + ["lm_head"], layers_to_transform=[1]),
    "layers-pattern": lambda n: dict(r=8, target_modules=n["attn"], layers_to_transform=0, layers_pattern=n["layers"]),
    "modules-to-save": lambda n: dict(r=8, target_modules=n["attn"], modules_to_save=["lm_head"]),
    "bias-all": lambda n: dict(r=8, target_modules=n["attn"] + n["mlp"], bias="all"),
    "bias-lora-only": lambda n: dict(r=8, target_modules=n["attn"] + n["mlp"], bias="lora_only"),
    "lora-bias": lambda n: dict(r=8, target_modules=n["attn"] + n["mlp"], lora_bias=True),
    "embedding-target": lambda n: dict(r=8, target_modules=[n["embed"]] + n["attn"], use_dora=True),
    "regex-target": lambda n: dict(r=8, target_modules=rf".*\.({'|'.join(n['attn'])})"),
    "all-linear": lambda n: dict(r=4, lora_alpha=8, target_modules="all-linear"),
    "all-linear-exclude": lambda n: dict(r=4, target_modules="all-linear", exclude_modules=n["attn"][:1]),
    "exclude-regex": lambda n: dict(r=4, target_modules=n["attn"], exclude_modules=rf".*{n['layers']}\.0\..*"),
    "unknown-target": lambda n: dict(r=8, target_modules=["no_such_module"]),
    "container-target": lambda n: dict(r=8, target_modules=["mlp"]),
    "one-target-missing": lambda n: dict(r=8, target_modules=n["attn"] + ["no_such_module"]),
}
MOE_CASES: dict[str, dict[str, Any]] = {
    "experts-by-parameter": dict(r=4, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj", "experts.down_proj"]),
    "experts-by-v4-names": dict(r=4, lora_alpha=8, target_modules=["q_proj", "w1", "w3", "w2", "gate"]),
    "half-a-fused-expert": dict(r=4, target_modules=["w1"]),
    "experts-regex": dict(r=4, target_modules=r".*\.(q_proj|w1|w3)"),
    "experts-with-dropout": dict(r=4, target_modules=["q_proj"], target_parameters=["down_proj"], lora_dropout=0.1),
}


def calc_counts(config: dict[str, Any], lora: dict[str, Any]) -> tuple[int, int]:
    """(trainable, all) from app.calc."""
    result = count_trainable(LoraSpec(**lora), architecture_of(config))
    return result.trainable, result.total


def assert_same_as_peft(config: dict[str, Any], lora: dict[str, Any]) -> None:
    """Equal counts, or both refuse the configuration."""
    try:
        expected = peft_counts(config, lora)
    except (ValueError, TypeError, NotImplementedError) as peft_error:
        with pytest.raises((FieldError, ValidationError)):
            calc_counts(config, lora)
        return peft_error
    assert calc_counts(config, lora) == expected


def _model_params(ids):
    return [pytest.param(model_id, marks=pytest.mark.slow) if model_id in HEAVY else model_id for model_id in ids]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("model_id", load_catalogue().ids)
def test_every_model_and_case_on_real_widths(model_id, case):
    """Each catalogue config cut to two layers: every shape, tie and bias is the real one."""
    config = shallow(catalogue_config(model_id))
    assert_same_as_peft(config, CASES[case](names_for(config)))


@pytest.mark.parametrize("case", ["plain", "all-linear"])
@pytest.mark.parametrize("model_id", _model_params(load_catalogue().ids))
def test_every_model_at_full_depth(model_id, case):
    config = catalogue_config(model_id)
    assert_same_as_peft(config, CASES[case](names_for(config)))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("model_id", load_catalogue().ids)
def test_every_model_and_case_at_full_depth(model_id, case):
    config = catalogue_config(model_id)
    assert_same_as_peft(config, CASES[case](names_for(config)))


@pytest.mark.parametrize("case", sorted(MOE_CASES))
def test_mixtral_expert_targets(case):
    assert_same_as_peft(shallow(catalogue_config("mixtral-8x7b")), MOE_CASES[case])


@pytest.mark.parametrize(
    ("model_id", "r", "expected"),
    [  # measured with all projections targeted (reference/peft-lora-facts.md)
        ("llama-3.1-8b", 8, 20_971_520),
        ("llama-3.1-8b", 64, 167_772_160),
        ("qwen2.5-0.5b", 16, 8_798_208),
        ("gemma-2-2b", 8, 10_383_360),
        ("phi-3-mini", 16, 25_165_824),
        ("gpt2", 8, 1_179_648),
        ("smollm2-135m-instruct", 8, 2_442_240),
    ],
)
def test_published_counts(model_id, r, expected):
    arch = architecture_of(catalogue_config(model_id))
    assert count_trainable(LoraSpec(r=r, target_modules="all-linear"), arch).trainable == expected


@pytest.mark.parametrize(
    ("lora", "target"),
    [
        (dict(r=4, target_modules=["k_proj"], init_lora_weights="mica"), "linear"),
        (dict(r=4, target_modules=["embed_tokens"], init_lora_weights="mica"), "embedding"),
        (dict(r=4, target_modules=["k_proj"], init_lora_weights="gaussian"), "linear"),
        (dict(r=4, target_modules=["k_proj", "down_proj"], init_lora_weights=False), "linear"),
    ],
)
def test_initialisations_on_real_weights(lora, target):
    """MiCA freezes B after an SVD of real weights, so it cannot run on the meta device."""
    config = catalogue_config("tiny-llama")
    assert calc_counts(config, lora) == peft_counts(config, lora, meta=False)


LLAMA_LIKE = st.sampled_from(["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"])
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@st.composite
def llama_like_configs(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([2, 4, 8]))
    return dict(
        model_type=draw(LLAMA_LIKE),
        vocab_size=draw(st.integers(8, 64)),
        hidden_size=heads * head_dim * draw(st.sampled_from([1, 2])),
        intermediate_size=draw(st.integers(1, 48)),
        num_hidden_layers=draw(st.integers(1, 3)),
        num_attention_heads=heads,
        num_key_value_heads=draw(st.sampled_from([kv for kv in (1, 2, 4) if heads % kv == 0])),
        head_dim=head_dim,
        tie_word_embeddings=draw(st.booleans()),
        attention_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        pad_token_id=0, bos_token_id=0, eos_token_id=0,
    )


@st.composite
def lora_configs(draw):
    targets = draw(st.lists(st.sampled_from(PROJECTIONS + ["embed_tokens", "lm_head"]), min_size=1, max_size=5, unique=True))
    lora: dict[str, Any] = dict(
        r=draw(st.integers(1, 16)),
        lora_alpha=draw(st.integers(1, 64)),
        target_modules=draw(st.sampled_from([targets, "all-linear"])),
        use_dora=draw(st.booleans()),
        bias=draw(st.sampled_from(["none", "all", "lora_only"])),
        use_rslora=draw(st.booleans()),
    )
    if isinstance(lora["target_modules"], list):
        if draw(st.booleans()):
            lora["layers_to_transform"] = draw(st.lists(st.integers(0, 2), min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            lora["lora_bias"] = not lora["use_dora"] and "embed_tokens" not in targets
    if draw(st.booleans()):
        lora["rank_pattern"] = {draw(st.sampled_from(PROJECTIONS)): draw(st.integers(1, 8))}
    if draw(st.booleans()):
        lora["modules_to_save"] = [draw(st.sampled_from(["lm_head", "embed_tokens", "input_layernorm", "model.norm"]))]
    return lora


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=llama_like_configs(), lora=lora_configs())
def test_random_llama_like_configs_match_peft(config, lora):
    assert_same_as_peft(config, lora)
