"""Serving lints (vLLM's rank limit and loader, merging QLoRA) and the vision-tower lint: each fires when it should."""

from __future__ import annotations

import json

import pytest

from app.calc.catalogue import DEFAULT_DIR, load_catalogue
from app.calc.lints import collect_lints
from app.calc.serving import VLLM_MAX_LORA_RANKS, vision_modules, vllm_buffer_bytes, vllm_rank_needed
from app.calc.trainable import count_trainable
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec
from tests.calc.peft_oracle import architecture_of, catalogue_config, peft_counts, shallow

SERVING_CODES = {"vllm_max_lora_rank", "vllm_rank_too_high", "vllm_dora", "vllm_modules_to_save", "vllm_bias",
                 "vllm_target_parameters", "vllm_vision_tower", "qlora_merge"}


def lints(model_id: str, training: dict | None = None, **lora):
    arch = load_catalogue().get(model_id).architecture_for(lora.get("task_type"), None)
    spec = LoraSpec(**lora)
    return collect_lints(spec, CalcTrainingSpec(**(training or {})), arch, count_trainable(spec, arch))


def codes(model_id: str = "llama-3.1-8b", training: dict | None = None, **lora) -> set[str]:
    return {lint.code for lint in lints(model_id, training, **lora)}


QKV = ["q_proj", "k_proj", "v_proj"]


@pytest.mark.parametrize(
    ("model_id", "training", "lora", "fires", "silent"),
    [
        ("llama-3.1-8b", None, dict(r=16, target_modules=QKV), set(), SERVING_CODES),
        ("llama-3.1-8b", None, dict(r=17, target_modules=QKV), {"vllm_max_lora_rank"}, {"vllm_rank_too_high"}),
        ("llama-3.1-8b", None, dict(r=8, target_modules=QKV, rank_pattern={"v_proj": 64}), {"vllm_max_lora_rank"}, set()),
        ("llama-3.1-8b", None, dict(r=600, lora_alpha=600, target_modules=QKV), {"vllm_rank_too_high"},
         {"vllm_max_lora_rank"}),
        ("llama-3.1-8b", None, dict(r=8, target_modules=QKV, use_dora=True), {"vllm_dora"}, {"vllm_bias"}),
        ("llama-3.1-8b", None, dict(r=8, target_modules=QKV, modules_to_save=["lm_head"]), {"vllm_modules_to_save"},
         {"vllm_dora"}),
        ("llama-3.1-8b", None, dict(r=8, target_modules=QKV, bias="lora_only"), {"vllm_bias"}, {"vllm_modules_to_save"}),
        ("llama-3.1-8b", {"base_dtype": "nf4"}, dict(r=8, target_modules=QKV), {"qlora_merge"}, set()),
        ("llama-3.1-8b", {"base_dtype": "int8"}, dict(r=8, target_modules=QKV), {"qlora_merge"}, set()),
        ("llama-3.1-8b", {"base_dtype": "bf16"}, dict(r=8, target_modules=QKV), set(), {"qlora_merge"}),
        ("qwen3-30b-a3b", None, dict(r=8, target_modules="all-linear"), {"vllm_target_parameters"}, set()),
        ("qwen3-30b-a3b", None, dict(r=8, target_modules=QKV), set(), {"vllm_target_parameters"}),
        ("bert-base-uncased", None, dict(r=8, target_modules=["query", "value"], task_type="SEQ_CLS"),
         {"vllm_modules_to_save"}, {"vllm_vision_tower"}),
        ("gemma-3-4b-it", None, dict(r=8, target_modules="all-linear"), {"vision_tower_adapted", "vllm_vision_tower"}, set()),
        ("gemma-3-4b-it", None, dict(r=8, target_modules=QKV), {"vision_tower_adapted", "vllm_vision_tower"}, set()),
        ("gemma-3-4b-it", None, dict(r=8, target_modules="all-linear", exclude_modules=r".*vision_tower.*"), set(),
         {"vision_tower_adapted", "vllm_vision_tower"}),
        ("gemma-3-4b-it", None, dict(r=8, target_modules=r".*language_model.*\.(q_proj|v_proj)"), set(),
         {"vision_tower_adapted", "vllm_vision_tower"}),
        ("gemma-3-1b-it", None, dict(r=8, target_modules="all-linear"), set(), {"vision_tower_adapted", "vllm_vision_tower"}),
    ],
)
def test_serving_lint_table(model_id, training, lora, fires, silent):
    found = codes(model_id, training, **lora)
    assert fires <= found
    assert not (silent & found)


def test_each_serving_lint_names_its_source():
    found = lints("gemma-3-4b-it", {"base_dtype": "nf4"}, r=600, lora_alpha=600, target_modules="all-linear",
                  use_dora=True, bias="all", modules_to_save=["lm_head"])
    found += lints("qwen3-30b-a3b", r=32, target_modules="all-linear")
    by_code = {lint.code: lint for lint in found}
    assert SERVING_CODES <= set(by_code)
    for code in SERVING_CODES | {"vision_tower_adapted"}:
        assert by_code[code].source, code
        assert any(word in by_code[code].source for word in ("commit", "peft 0.21.2")), code


@pytest.mark.parametrize(("rank", "needed"), [(1, 1), (2, 8), (16, 16), (17, 32), (300, 320), (512, 512), (513, None)])
def test_smallest_accepted_max_lora_rank(rank, needed):
    assert vllm_rank_needed(rank) == needed
    assert needed is None or needed in VLLM_MAX_LORA_RANKS


def test_vllm_buffers_follow_the_adapted_shapes():
    """max_loras x max_lora_rank x (in + out) x 2 bytes over every adapted Linear, summed from config.json's sizes."""
    config = json.loads((DEFAULT_DIR / "llama-3.1-8b.json").read_text())
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = hidden // config["num_attention_heads"] * config["num_key_value_heads"]
    per_layer = 2 * (hidden + hidden) + 2 * (hidden + kv) + 3 * (hidden + inner)
    arch = load_catalogue().get("llama-3.1-8b").architecture
    count = count_trainable(LoraSpec(r=8, target_modules="all-linear"), arch)
    assert vllm_buffer_bytes(count, 16) == layers * per_layer * 16 * 2
    assert vllm_buffer_bytes(count, 512, max_loras=4) == layers * per_layer * 512 * 4 * 2
    message = next(lint.message for lint in lints("llama-3.1-8b", r=64, target_modules="all-linear")
                   if lint.code == "vllm_max_lora_rank")
    assert "--max-lora-rank 64" in message and f"{layers * per_layer * 64 * 2 / 2**20:,.1f} MiB" in message


def test_vision_modules_are_found_by_name():
    assert vision_modules(["model.vision_tower.encoder.layers.0.self_attn.q_proj", "model.language_model.layers.0.q_proj",
                           "visual.blocks.0.attn.qkv", "model.visual_adapter.x"]) == [
        "model.vision_tower.encoder.layers.0.self_attn.q_proj", "visual.blocks.0.attn.qkv"]


@pytest.mark.parametrize("lora", [
    dict(r=4, target_modules="all-linear"),
    dict(r=4, target_modules="all-linear", exclude_modules=r".*vision_tower.*"),
    dict(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"),
    dict(r=4, target_modules=["q_proj", "v_proj"]),
])
def test_vision_tower_advice_matches_peft(lora):
    """The lint's remedies do what it says in peft itself: the vision tower drops out, and the counts stay equal."""
    config = shallow(catalogue_config("gemma-3-4b-it"))
    arch = architecture_of(config)
    count = count_trainable(LoraSpec(**lora), arch)
    assert (count.trainable, count.total) == peft_counts(config, lora)
    adapted_tower = vision_modules([item.name for item in count.adapted])
    assert bool(adapted_tower) == ("exclude_modules" not in lora and "language_model" not in str(lora["target_modules"]))
