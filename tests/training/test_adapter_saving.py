"""Saving a job's adapter: the space it needs is the saved file's tensor bytes, a disk too full refuses it before
writing, and a save that fails part-way leaves no files behind."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from app.settings import Settings
from app.training.loading import build_random_model
from app.training.run import DiskSpaceError, adapter_bytes, ensure_disk_space, save_adapter


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def adapted(request, tmp_path_factory):
    """tiny-llama with random weights and a LoRA adapter (with DoRA's magnitudes) in the given dtype."""
    model, _ = build_random_model(Settings(var_dir=tmp_path_factory.mktemp("var")), seed=3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True)
    return get_peft_model(model.to(request.param), config)


def tensor_bytes(safetensors_file: Path) -> int:
    """The bytes of a safetensors file's tensors: the file less its 8-byte length prefix and JSON header."""
    with safetensors_file.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_length))
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    assert max(ends) == safetensors_file.stat().st_size - 8 - header_length
    return max(ends)


def test_the_space_an_adapter_needs_is_exactly_its_saved_tensor_bytes(adapted, tmp_path):
    saved = save_adapter(adapted, tmp_path / "job" / "adapter", reserve=0)
    assert adapter_bytes(adapted) == tensor_bytes(saved / "adapter_model.safetensors")


def test_a_disk_without_room_for_the_adapter_and_the_reserve_refuses_it_naming_the_setting(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    # each alone fits, together they do not: the reserve is kept on top of what the adapter needs
    with pytest.raises(DiskSpaceError, match="min_free_disk_bytes"):
        ensure_disk_space(tmp_path / "a", needed=int(free * 0.6), reserve=int(free * 0.6))
    ensure_disk_space(tmp_path / "b" / "c", needed=int(free * 0.3), reserve=int(free * 0.3))
    assert (tmp_path / "b" / "c").is_dir()  # made, ready for the save


def test_a_refused_save_writes_nothing(adapted, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskSpaceError, match="not enough disk space"):
        save_adapter(adapted, tmp_path / "adapter", reserve=free)
    assert not (tmp_path / "adapter").exists()


def test_a_save_that_fails_part_way_removes_its_partial_files(adapted, tmp_path):
    adapter_dir = tmp_path / "adapter"
    # the config cannot be written where a directory stands: the save fails after it began writing
    (adapter_dir / "adapter_config.json").mkdir(parents=True)
    with pytest.raises(DiskSpaceError, match="partial files were removed"):
        save_adapter(adapted, adapter_dir, reserve=0)
    assert not adapter_dir.exists()


def test_a_save_that_fails_before_writing_anything_fails_as_the_save_not_as_the_clean_up(adapted, tmp_path):
    adapter_dir = tmp_path / ("a" * 300)  # longer than a file name may be: the save cannot make its directory
    with pytest.raises(DiskSpaceError, match="saving the adapter failed"):
        save_adapter(adapted, adapter_dir, reserve=0)
    assert list(tmp_path.iterdir()) == []
