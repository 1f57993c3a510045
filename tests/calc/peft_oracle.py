"""The ground truth the calculator is held to: peft's own count on a model built on torch's meta device."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from app.calc.architecture import Architecture
from app.calc.tree import task_for
from app.training.trees import InProcessTrees, build_model, build_tree

MODELS_DIR = Path(__file__).resolve().parents[2] / "content" / "models"
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers")

logging.getLogger("transformers").setLevel(logging.ERROR)


def catalogue_config(model_id: str) -> dict[str, Any]:
    """The config.json of a catalogue model, as stored."""
    return json.loads((MODELS_DIR / f"{model_id}.json").read_text())


def shallow(config: dict[str, Any], layers: int = 2) -> dict[str, Any]:
    """The same config with fewer layers (nested text/vision configs too): every width, vocabulary and tie stays real."""
    result = copy.deepcopy(config)
    for key in LAYER_KEYS:
        if isinstance(result.get(key), int):
            result[key] = min(result[key], layers)
    for key, value in result.items():
        if isinstance(value, dict) and key.endswith("_config"):
            result[key] = shallow(value, layers)
    for key in ("layer_types", "mlp_only_layers"):
        if isinstance(result.get(key), list):
            result[key] = result[key][:layers]
    return result


TREES = InProcessTrees()


def architecture_of(config: dict[str, Any], task: str | None = None) -> Architecture:
    """The calculator's architecture of a config, built in process."""
    return TREES.architecture(config, task)


def meta_model(config: dict[str, Any], task: str | None = None) -> torch.nn.Module:
    """The model the tree helper builds for this config and task, fresh, on the meta device."""
    return build_model(config, task)[0]


def peft_counts(config: dict[str, Any], lora: dict[str, Any], *, meta: bool = True) -> tuple[int, int]:
    """(trainable, all) from get_nb_trainable_parameters after get_peft_model."""
    task = task_for(lora.get("task_type"))
    if meta:
        model = meta_model(config, task)
    else:
        torch.manual_seed(0)
        model = build_model(config, task, device="cpu")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, LoraConfig(**copy.deepcopy(lora)))
    return peft_model.get_nb_trainable_parameters()

