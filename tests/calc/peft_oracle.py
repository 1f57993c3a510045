"""The ground truth the calculator is held to: peft's own count on a model built on torch's meta device."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

MODELS_DIR = Path(__file__).resolve().parents[2] / "content" / "models"
LAYER_KEYS = ("num_hidden_layers", "n_layer")

logging.getLogger("transformers").setLevel(logging.ERROR)


def catalogue_config(model_id: str) -> dict[str, Any]:
    """The config.json of a catalogue model, as stored."""
    return json.loads((MODELS_DIR / f"{model_id}.json").read_text())


def shallow(config: dict[str, Any], layers: int = 2) -> dict[str, Any]:
    """The same config with fewer decoder layers: every width, vocabulary and tie stays real."""
    result = copy.deepcopy(config)
    for key in LAYER_KEYS:
        if key in result:
            result[key] = min(result[key], layers)
    return result


@lru_cache(maxsize=64)
def _config_object(config_json: str):
    data = json.loads(config_json)
    return AutoConfig.for_model(**data)


def meta_model(config: dict[str, Any]) -> torch.nn.Module:
    """A fresh AutoModelForCausalLM on the meta device (no memory, no weights)."""
    hf_config = _config_object(json.dumps(config, sort_keys=True))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def peft_counts(config: dict[str, Any], lora: dict[str, Any], *, meta: bool = True) -> tuple[int, int]:
    """(trainable, all) from get_nb_trainable_parameters after get_peft_model."""
    if meta:
        model = meta_model(config)
    else:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config_object(json.dumps(config, sort_keys=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, LoraConfig(**lora))
    return peft_model.get_nb_trainable_parameters()
