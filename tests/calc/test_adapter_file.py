"""adapter_model.safetensors: the predicted size equals a real save_pretrained's, byte for byte, in fp32 and bf16."""

from __future__ import annotations

import json
import struct
import warnings

import pytest
import torch

from app.calc.adapter_file import adapter_file_bytes
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from tests.calc.peft_oracle import architecture_of, catalogue_config

TINY = catalogue_config("tiny-llama")
# tiny-llama has no biases; this variant has one on every attention and MLP projection, so bias= has work to do
TINY_WITH_BIASES = {**TINY, "attention_bias": True, "mlp_bias": True}
TINY_GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "n_positions": 64, "vocab_size": 96}
TINY_MIXTRAL = {"model_type": "mixtral", "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
                "num_key_value_heads": 2, "num_hidden_layers": 2, "num_local_experts": 3, "num_experts_per_tok": 2,
                "vocab_size": 64}

CASES = {
    "plain": (TINY, dict(r=8, target_modules=["q_proj", "v_proj"])),
    "all-linear-dora": (TINY, dict(r=4, target_modules="all-linear", use_dora=True)),
    "lora-bias": (TINY_WITH_BIASES, dict(r=4, target_modules=["q_proj", "down_proj"], lora_bias=True)),
    "bias-none": (TINY_WITH_BIASES, dict(r=4, target_modules=["q_proj", "up_proj"], bias="none")),
    "bias-all": (TINY_WITH_BIASES, dict(r=4, target_modules=["q_proj", "up_proj"], bias="all")),
    "bias-lora-only": (TINY_WITH_BIASES, dict(r=4, target_modules=["q_proj", "up_proj"], bias="lora_only")),
    "bias-all-dora": (TINY_WITH_BIASES, dict(r=2, target_modules="all-linear", bias="all", use_dora=True)),
    "embedding-and-modules-to-save": (TINY, dict(r=4, target_modules=["q_proj", "embed_tokens"], modules_to_save=["lm_head"])),
    "embedding-dora-bias-all": (TINY_WITH_BIASES, dict(r=4, target_modules=["embed_tokens", "k_proj"], use_dora=True, bias="all")),
    "embedding-by-regex-and-lm-head": (TINY, dict(r=4, target_modules=r".*(embed_tokens|lm_head|o_proj)")),
    "saved-module-with-bias": (TINY_WITH_BIASES, dict(r=4, target_modules=["q_proj"], modules_to_save=["mlp"], bias="all")),
    "rank-pattern": (TINY, dict(r=8, target_modules=["q_proj", "o_proj"], rank_pattern={"o_proj": 2}, layers_to_transform=[1])),
    "gpt2-conv1d-bias-all": (TINY_GPT2, dict(r=4, target_modules=["c_attn", "c_fc"], bias="all", fan_in_fan_out=True)),
    "gpt2-conv1d-lora-only-dora": (TINY_GPT2, dict(r=4, target_modules=["c_proj"], bias="lora_only", use_dora=True, fan_in_fan_out=True)),
    "gpt2-tied-embedding-saved": (TINY_GPT2, dict(r=4, target_modules=["c_attn"], modules_to_save=["wte"], bias="all", fan_in_fan_out=True)),
    "experts-by-parameter": (TINY_MIXTRAL, dict(r=4, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj", "experts.down_proj"])),
    "experts-one-parameter": (TINY_MIXTRAL, dict(r=2, target_modules=["v_proj"], target_parameters=["experts.down_proj"], bias="lora_only")),
}


def real_save(tmp_path, config: dict, lora: dict, dtype: torch.dtype):
    """Size and parsed header of adapter_model.safetensors from peft's own save_pretrained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(AutoModelForCausalLM.from_config(AutoConfig.for_model(**config)), LoraConfig(**lora))
        model.to(dtype).save_pretrained(tmp_path)
    content = (tmp_path / "adapter_model.safetensors").read_bytes()
    header_length = struct.unpack("<Q", content[:8])[0]
    return len(content), json.loads(content[8:8 + header_length])


@pytest.mark.parametrize("case", sorted(CASES))
def test_size_is_exactly_a_real_saves(tmp_path, case):
    config, lora = CASES[case]
    spec = LoraSpec(**lora)
    arch = architecture_of(config)
    fp32, bf16, tensors = adapter_file_bytes(spec, arch, count_trainable(spec, arch))
    fp32_size, header = real_save(tmp_path / "fp32", config, lora, torch.float32)
    assert tensors == len(header) - 1  # every key but __metadata__
    assert fp32 == fp32_size
    bf16_size, _ = real_save(tmp_path / "bf16", config, lora, torch.bfloat16)
    assert bf16 == bf16_size


def test_the_cases_reach_every_kind_of_saved_tensor(tmp_path):
    """The table above is only a proof if the saves hold every key shape the calculator predicts."""
    seen = set()
    for case, (config, lora) in CASES.items():
        _, header = real_save(tmp_path / case, config, lora, torch.float32)
        for key in header:
            seen.update(part for part in ("lora_B.bias", "lora_magnitude_vector", "lora_embedding_A", "base_layer.bias",
                                          "base_layer.weight", "original_module", "modules_to_save", "base_layer.lora_A")
                        if part in key)
            seen.update({"plain .bias"} if key.endswith(".bias") and "base_layer" not in key and "lora_" not in key
                        and "modules_to_save" not in key and "original_module" not in key else set())
    assert seen == {"lora_B.bias", "lora_magnitude_vector", "lora_embedding_A", "base_layer.bias", "base_layer.weight",
                    "original_module", "modules_to_save", "base_layer.lora_A", "plain .bias"}
