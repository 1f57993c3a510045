"""Other tools' configs: real example files translated to peft's fields, round-tripped through LoraConfig, counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from peft import LoraConfig

from app.calc.dialects import parse_config_text, recognise
from app.calc.explain import explain
from app.spec.errors import FieldError
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec
from tests.calc.peft_oracle import TREES, catalogue_config

EXAMPLES = Path(__file__).parent / "dialect_examples"
EXPECTED = {
    "mlx_lm_lora_config.yaml": ("mlx-lm", dict(r=8, lora_alpha=160.0, lora_dropout=0.0, use_dora=False,
                                               target_modules=["self_attn.q_proj", "self_attn.v_proj"]),
                                dict(learning_rate=1e-5, per_device_train_batch_size=4, max_steps=1000, max_seq_length=2048)),
    "axolotl_llama3_lora_1b.yml": ("Axolotl", dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=[
        "gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"]),
        dict(learning_rate=0.0002, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_seq_length=2048,
             packing=True, optim="adamw_8bit", lr_scheduler_type="cosine")),
    "llama_factory_llama3_lora_sft.yaml": ("LLaMA-Factory", dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"),
                                           dict(learning_rate=1e-4, gradient_accumulation_steps=8, max_seq_length=2048)),
    "torchtune_llama3_2_1B_lora_single_device.yaml": ("torchtune", dict(r=64, lora_alpha=128, lora_dropout=0.0, target_modules=[
        "q_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"]),
        dict(learning_rate=3e-4, weight_decay=0.01, per_device_train_batch_size=4, warmup_steps=100, lr_scheduler_type="cosine")),
}


def translated(name: str):
    return recognise(parse_config_text((EXAMPLES / name).read_text()))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_examples_translate(name):
    tool, lora, training = EXPECTED[name]
    translation = translated(name)
    assert translation.tool == tool
    assert {key: translation.lora[key] for key in lora} == lora
    assert {key: translation.training[key] for key in training} == training
    CalcTrainingSpec.model_validate(translation.training)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_translation_round_trips_through_peft(name, tmp_path):
    lora = translated(name).lora
    LoraConfig(**lora).save_pretrained(tmp_path)
    loaded = LoraConfig.from_pretrained(tmp_path).to_dict()
    for key, value in LoraSpec.model_validate(lora).model_dump().items():
        if key in lora:
            expected = set(value) if isinstance(value, list) and key == "target_modules" else value
            got = set(loaded[key]) if isinstance(loaded[key], (list, set)) and key == "target_modules" else loaded[key]
            assert got == expected, key


def test_mlx_adapts_only_the_last_layers_of_the_model():
    config = {"fine_tune_type": "lora", "num_layers": 4, "lora_parameters": {"rank": 8, "scale": 10.0, "dropout": 0.0,
              "keys": ["self_attn.q_proj"]}, "model": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    explanation = explain(config)
    assert explanation.translated.lora["layers_to_transform"] == [26, 27, 28, 29]
    assert explanation.result.trainable_params == 4 * 8 * (576 + 576)
    assert explanation.result.scaling.values == [10.0]
    assert any("transposed" in note for note in explanation.translated.notes)


def test_torchtune_counts_on_the_catalogue_model():
    explanation = explain(translated_dict("torchtune_llama3_2_1B_lora_single_device.yaml"),
                          model_config=catalogue_config("llama-3.2-1b"), trees=TREES)
    rows = {row.name for row in explanation.result.modules}
    assert rows == {"self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj", "mlp.up_proj"}
    assert all(key.status in ("translated", "tool") for key in explanation.keys)


def translated_dict(name: str) -> dict:
    return parse_config_text((EXAMPLES / name).read_text())


def test_axolotl_target_linear_and_qlora():
    translation = recognise({"adapter": "qlora", "lora_r": 8, "lora_target_linear": True, "base_model": "x"})
    assert translation.lora["target_modules"] == "all-linear"
    assert translation.training["base_dtype"] == "nf4"
    assert translation.lora["lora_alpha"] == 8


@pytest.mark.parametrize(
    ("config", "loc", "words"),
    [
        ({"fine_tune_type": "full", "num_layers": 16}, ("adapter_config", "fine_tune_type"), "full fine-tuning"),
        ({"finetuning_type": "freeze", "lora_rank": 8}, ("adapter_config", "finetuning_type"), "not LoRA"),
        ({"model": {"_component_": "torchtune.models.llama3_2.llama3_2_1b"}}, ("adapter_config", "model", "_component_"), "without LoRA"),
        ({"model_type": "llama", "hidden_size": 64, "architectures": ["LlamaForCausalLM"]}, ("adapter_config",), "model's config.json"),
        ({"hello": "world"}, ("adapter_config",), "not an adapter config"),
        ({"lora_parameters": {"rank": "eight"}}, ("adapter_config", "lora_parameters", "rank"), "whole number"),
    ],
)
def test_non_peft_files_are_never_fine(config, loc, words):
    with pytest.raises(FieldError) as caught:
        explain(config)
    assert caught.value.loc == loc and words in caught.value.message


def test_yaml_aliases_are_refused():
    with pytest.raises(FieldError):
        parse_config_text("a: &x [1, 2]\nb: *x\n")
