"""The adapter_config.json field table equals what the installed peft writes."""

from __future__ import annotations

import json

import peft

from app.calc.fields import FIELDS, PEFT_VERSION, adapter_config_defaults


def test_defaults_equal_a_saved_default_config(tmp_path):
    peft.LoraConfig().save_pretrained(str(tmp_path))
    assert adapter_config_defaults() == json.loads((tmp_path / "adapter_config.json").read_text())


def test_version_is_the_installed_one():
    assert PEFT_VERSION == peft.__version__


def test_every_field_has_a_meaning():
    assert all(info.meaning.endswith(".") for info in FIELDS.values())
