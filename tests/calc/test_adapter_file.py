"""adapter_model.safetensors size: tensor data exact, header close, checked against a real save."""

from __future__ import annotations

import struct

import pytest
import torch

from app.calc.adapter_file import adapter_file_bytes
from app.spec.lora import LoraSpec
from app.calc.trainable import count_trainable
from tests.calc.peft_oracle import architecture_of, catalogue_config


@pytest.mark.parametrize(
    "lora",
    [
        dict(r=8, target_modules=["q_proj", "v_proj"]),
        dict(r=4, target_modules="all-linear", use_dora=True),
        dict(r=4, target_modules=["q_proj"], lora_bias=True),
        dict(r=4, target_modules=["q_proj", "embed_tokens"], modules_to_save=["lm_head"]),
    ],
)
def test_size_matches_a_real_save(tmp_path, lora):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = catalogue_config("tiny-llama")
    model = get_peft_model(AutoModelForCausalLM.from_config(AutoConfig.for_model(**config)), LoraConfig(**lora))
    model.save_pretrained(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    data = path.stat().st_size - 8 - header_length

    arch = architecture_of(config)
    spec = LoraSpec(**lora)
    fp32, _, _ = adapter_file_bytes(spec, arch, count_trainable(spec, arch))
    count = count_trainable(spec, arch)
    embeddings = arch.by_name["model.embed_tokens"].in_features * 64 if "embed_tokens" in lora["target_modules"] else 0
    predicted_data = 4 * (sum(item.lora_params + item.extra_params for item in count.adapted)
                          + sum(size for _, size in count.saved_modules) + embeddings)
    assert predicted_data == data
    assert fp32 == pytest.approx(path.stat().st_size, rel=0.05)
