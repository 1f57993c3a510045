"""adapter_model.safetensors read from its header: real peft saves give back their config; hostile headers get a FieldError."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from app.calc.adapter_file import adapter_file_bytes, saved_tensors
from app.calc.adapter_weights import (
    compare_with_config, compare_with_prediction, header_of_file, header_of_json, header_of_text, read_weights, remarks,
)
from app.calc.trainable import count_trainable
from app.spec.errors import FieldError
from app.spec.limits import MAX_WEIGHTS_HEADER_BYTES, MAX_WEIGHTS_KEY_LENGTH, MAX_WEIGHTS_TENSORS
from app.spec.lora import LoraSpec
from tests.calc.peft_oracle import architecture_of
from tests.calc.test_adapter_file import CASES, TINY, TINY_MIXTRAL


def saved_file(tmp_path, config: dict, lora: dict, dtype: torch.dtype = torch.float32) -> bytes:
    """adapter_model.safetensors as peft's save_pretrained writes it for a tiny model."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(AutoModelForCausalLM.from_config(AutoConfig.for_model(**config)), LoraConfig(**lora))
        model.to(dtype).save_pretrained(tmp_path)
    return (tmp_path / "adapter_model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def saves(tmp_path_factory) -> dict[str, bytes]:
    """Every case of the adapter-file table, saved once by peft."""
    return {case: saved_file(tmp_path_factory.mktemp(case), config, lora) for case, (config, lora) in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_real_save_is_read_back_as_its_config_predicts(saves, case):
    config, lora = CASES[case]
    content = saves[case]
    header = header_of_file(content)
    spec = LoraSpec(**lora)
    weights = read_weights(header, spec)
    assert weights.file_bytes == len(content)
    assert weights.tensors == len(json.loads(content[8:8 + struct.unpack("<Q", content[:8])[0]])) - 1
    arch = architecture_of(config)
    count = count_trainable(spec, arch)
    # every adapted module of the calculator is a row of the file, with its rank (r x experts for a parameter)
    assert sum(row.count for row in weights.modules) == len(count.adapted)
    assert sorted(row.rank for row in weights.modules for _ in range(row.count)) == sorted(item.r * item.experts for item in count.adapted)
    assert weights.lora_params == sum(item.lora_params + item.extra_params for item in count.adapted)
    fp32, bf16, _ = adapter_file_bytes(spec, arch, count)
    predicted = compare_with_prediction(header, weights, saved_tensors(spec, arch, count), fp32, bf16)
    assert predicted.matches, predicted
    assert [finding for finding in compare_with_config(weights, header, spec) + remarks(weights)] == []


def test_what_each_kind_of_tensor_becomes(saves):
    rows = {case: {row.name: row for row in read_weights(header_of_file(saves[case]), LoraSpec(**CASES[case][1])).modules}
            for case in CASES}
    dora = rows["all-linear-dora"]["self_attn.q_proj"]
    assert dora.dora and dora.kind == "linear" and dora.rank == 4 and dora.a_shape == [4, 64] and dora.b_shape == [64, 4]
    assert dora.count == 2 and dora.layers == [0, 1]
    assert rows["lora-bias"]["mlp.down_proj"].lora_bias and not rows["plain"]["self_attn.q_proj"].lora_bias
    embedding = rows["embedding-and-modules-to-save"]["model.embed_tokens"]
    assert embedding.kind == "embedding" and embedding.base_weights_saved and embedding.a_shape == [4, 512]
    assert rows["rank-pattern"]["self_attn.o_proj"].rank == 2 and rows["rank-pattern"]["self_attn.q_proj"].rank == 8
    assert rows["rank-pattern"]["self_attn.o_proj"].layers == [1]
    experts = rows["experts-by-parameter"]
    assert {experts["mlp.experts"].kind, experts["mlp.experts.base_layer"].kind} == {"parameter"}
    assert experts["mlp.experts"].experts == TINY_MIXTRAL["num_local_experts"] and experts["mlp.experts"].rank == 4 * 3
    copies = read_weights(header_of_file(saves["embedding-and-modules-to-save"])).copies
    assert [(row.name, row.what, row.tensors) for row in copies] == [("lm_head", "modules_to_save copy", ["weight"])]
    saved = {row.what for row in read_weights(header_of_file(saves["saved-module-with-bias"])).copies}
    assert {"modules_to_save copy", "bias", "bias of an adapted layer", "modules_to_save: the original module's bias"} <= saved


def test_a_config_that_is_not_what_was_saved_is_told_apart(saves):
    header = header_of_file(saves["rank-pattern"])  # r=8, o_proj at 2, layer 1 only, q_proj and o_proj
    weights = read_weights(header)
    other = LoraSpec(r=16, target_modules=["q_proj", "o_proj", "gate_proj"], rank_pattern={"down_proj": 4}, use_dora=True)
    codes = {finding.code: finding.message for finding in compare_with_config(weights, header, other)}
    assert "gate_proj" in codes["target_unmatched"]
    assert "rank 2 where the config gives 16" in codes["rank_differs"] or "rank 8 where the config gives 16" in codes["rank_differs"]
    assert "'down_proj'" in codes["rank_pattern_unused"]
    assert "use_dora=True" in codes["dora_differs"]
    regex = LoraSpec(r=8, target_modules=r".*\.nothing_here", rank_pattern={"o_proj": 2})
    assert [f.code for f in compare_with_config(weights, header, regex)] == ["target_unmatched"]


def test_a_prediction_for_another_config_differs_by_key(saves):
    header = header_of_file(saves["plain"])  # r=8 on q_proj, v_proj
    spec = LoraSpec(r=8, target_modules=["q_proj", "k_proj"])
    arch = architecture_of(TINY)
    count = count_trainable(spec, arch)
    predicted = compare_with_prediction(header, read_weights(header), saved_tensors(spec, arch, count),
                                        *adapter_file_bytes(spec, arch, count)[:2])
    assert not predicted.matches
    assert any("k_proj" in key for key in predicted.missing) and any("v_proj" in key for key in predicted.unexpected)


def test_a_bf16_file_is_compared_with_the_bf16_prediction(tmp_path):
    config, lora = CASES["all-linear-dora"]
    content = saved_file(tmp_path, config, lora, torch.bfloat16)
    header = header_of_file(content)
    spec, arch = LoraSpec(**lora), architecture_of(config)
    count = count_trainable(spec, arch)
    weights = read_weights(header, spec)
    predicted = compare_with_prediction(header, weights, saved_tensors(spec, arch, count), *adapter_file_bytes(spec, arch, count)[:2])
    assert weights.dtypes == ["BF16"] and predicted.dtype == "BF16" and predicted.matches and predicted.bytes == len(content)


def test_the_text_the_browser_sends_gives_the_same_reading(saves):
    content = saves["bias-all-dora"]
    length = struct.unpack("<Q", content[:8])[0]
    from_text = read_weights(header_of_text(content[8:8 + length].decode(), file_bytes=len(content)))
    from_object = read_weights(header_of_json(json.loads(content[8:8 + length])))
    assert from_text == read_weights(header_of_file(content))
    assert from_object.file_bytes == len(content)  # the object is measured as safetensors writes it


def synthetic(tensors: dict[str, tuple[str, list[int]]]) -> dict:
    """A well-formed header for tensors back to back."""
    header, at = {"__metadata__": {"format": "pt"}}, 0
    for key, (dtype, shape) in tensors.items():
        size = {"F32": 4, "BF16": 2}[dtype] * (shape[0] * shape[1] if len(shape) == 2 else shape[0])
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + size]}
        at += size
    return header


LLAVA = {"text_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                         "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": 128},
         "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                           "num_hidden_layers": 1, "image_size": 16, "patch_size": 8, "projection_dim": 16}}


def llava_file(tmp_path, lora: dict) -> bytes:
    """A tiny llava (llama text model, CLIP vision tower) adapted and saved by peft."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, LlavaConfig

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(AutoModelForImageTextToText.from_config(LlavaConfig(**LLAVA)), LoraConfig(**lora))
        model.save_pretrained(tmp_path)
    return (tmp_path / "adapter_model.safetensors").read_bytes()


def test_all_linear_on_a_multimodal_model_adapts_its_vision_tower(tmp_path):
    weights = read_weights(header_of_file(llava_file(tmp_path / "all", {"r": 4, "target_modules": "all-linear"})))
    vision = [row for row in weights.modules if row.vision]
    # CLIP's encoder layer: q, k, v, out_proj and fc1, fc2; same shapes as the text model's q_proj, yet a row of its own
    assert sorted(row.name for row in vision) == ["mlp.fc1", "mlp.fc2", "self_attn.k_proj", "self_attn.out_proj",
                                                   "self_attn.q_proj", "self_attn.v_proj"]
    assert all(row.first.startswith("model.vision_tower.") for row in vision)
    (finding,) = remarks(weights)
    assert finding.code == "vision_tower_adapted" and finding.message.startswith("6 module(s)")
    text_only = read_weights(header_of_file(llava_file(tmp_path / "text", {"r": 4, "target_modules": r".*language_model.*\.(q_proj|v_proj)"})))
    assert remarks(text_only) == [] and sum(row.count for row in text_only.modules) == 2


def test_mlx_lm_transposed_layout_is_read_and_reported():
    # mlx-lm: lora_a (in, r), lora_b (r, out), magnitude `m` for DoRA, no base_model.model. prefix
    header = header_of_json(synthetic({
        "model.layers.0.self_attn.q_proj.lora_a": ("BF16", [64, 8]),
        "model.layers.0.self_attn.q_proj.lora_b": ("BF16", [8, 32]),
        "model.layers.0.self_attn.q_proj.m": ("BF16", [32]),
    }))
    weights = read_weights(header)
    (row,) = weights.modules
    assert weights.layout == "mlx-lm" and row.kind == "mlx" and row.rank == 8 and row.dora
    assert "transposed_layout" in [finding.code for finding in remarks(weights)]
    assert compare_with_config(weights, header, LoraSpec(r=8, target_modules=["q_proj"], use_dora=True)) == []


def length_prefixed(text: bytes, declared: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if declared is None else declared) + text


def good_header() -> dict:
    return synthetic({"base_model.model.a.lora_A.weight": ("F32", [2, 4]), "base_model.model.a.lora_B.weight": ("F32", [4, 2])})


HOSTILE = {
    "huge length": (length_prefixed(b"{}", 2**63), "at most"),
    "length past the end": (length_prefixed(b"{}", 1_000), "file ends after"),
    "too short": (b"\x01\x00", "8-byte header length"),
    "bad JSON": (length_prefixed(b'{"a": '), "not valid JSON"),
    "not UTF-8": (length_prefixed(b'{"\xff": 1}'), "not UTF-8"),
    "a list": (length_prefixed(b"[1, 2]"), "JSON object"),
    "nested deep": (length_prefixed(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "unknown dtype": (length_prefixed(json.dumps({"t": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}).encode()), "dtype"),
    "shape not ints": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}).encode()), "shape"),
    "shape too deep": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}).encode()), "shape"),
    "offsets wrong span": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode()), "needs 8"),
    "offsets reversed": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}).encode()), "start <= end"),
    "offsets overlap": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                                    "u": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}).encode()), "overlap"),
    "extra keys": (length_prefixed(json.dumps({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}).encode()), "exactly"),
    "metadata not strings": (length_prefixed(json.dumps({"__metadata__": {"a": 1}}).encode()), "__metadata__"),
    "name too long": (length_prefixed(json.dumps({"n" * (MAX_WEIGHTS_KEY_LENGTH + 1): {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()),
                      f"at most {MAX_WEIGHTS_KEY_LENGTH}"),
    "offsets beyond the file": (length_prefixed(json.dumps(good_header()).encode()), "truncated"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_refused_naming_the_field(case):
    content, reason = HOSTILE[case]
    with pytest.raises(FieldError) as caught:
        header_of_file(content)
    assert caught.value.loc == ("adapter_weights_header",) and reason in caught.value.message, caught.value.message


def test_too_many_tensors_are_refused_before_any_is_read():
    many = {f"t{index}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for index in range(MAX_WEIGHTS_TENSORS + 1)}
    with pytest.raises(FieldError, match="tensors; at most"):
        header_of_json(many)


def test_an_oversized_header_text_is_refused_by_its_length():
    with pytest.raises(FieldError, match=f"at most {MAX_WEIGHTS_HEADER_BYTES:,}"):
        header_of_text(" " * (MAX_WEIGHTS_HEADER_BYTES + 1))


def test_a_whole_file_checks_its_data_length():
    text = json.dumps(good_header()).encode()
    content = length_prefixed(text) + bytes(64)
    assert header_of_file(content).file_bytes == len(content)
    with pytest.raises(FieldError, match="bytes after the last tensor"):
        header_of_file(content + bytes(8))
