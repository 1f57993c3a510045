"""Module trees as plain data (built by app.training.trees from transformers itself) and the Architecture they make.

A tree is JSON: the model's modules in `named_modules()` order with kind, features and own parameters,
plus what peft does to this model type (default targets, the transformers-5 MoE rewrite). Pure: no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from app.calc.architecture import CONV1D, Architecture, Module, Param, split_layer
from app.spec.errors import FieldError, check_nesting, describe

TREE_FORMAT = 1
TreeError = FieldError
# Keys of config.json that do not change the module tree: left out of the cache key.
CONFIG_ONLY_KEYS = frozenset({"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "auto_map"})
# Tasks the helper builds, by the Auto class a user loads (app.training.trees.AUTO_CLASSES).
ALL_TASKS = ("causal-lm", "seq2seq-lm", "seq-cls", "token-cls", "question-ans", "image-text-to-text", "feature-extraction")
TASK_OF_PEFT_TYPE = {
    "CAUSAL_LM": "causal-lm", "SEQ_2_SEQ_LM": "seq2seq-lm", "SEQ_CLS": "seq-cls", "TOKEN_CLS": "token-cls",
    "QUESTION_ANS": "question-ans", "FEATURE_EXTRACTION": "feature-extraction",
}
# Class-name endings of config.json's `architectures` and the task they imply, tried in order.
ARCHITECTURE_SUFFIXES = (
    ("ForCausalLM", ("causal-lm",)),
    ("LMHeadModel", ("causal-lm", "seq2seq-lm")),
    ("ForConditionalGeneration", ("seq2seq-lm", "image-text-to-text", "causal-lm")),
    ("ForSequenceClassification", ("seq-cls",)),
    ("ForTokenClassification", ("token-cls",)),
    ("ForQuestionAnswering", ("question-ans",)),
)
FALLBACK_TASKS = ("causal-lm", "seq2seq-lm", "image-text-to-text", "feature-extraction")
# Work bounds on a pasted config: layers and experts multiply the modules transformers creates.
DEPTH_KEYS = frozenset({"num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers", "encoder_layers",
                        "decoder_layers", "n_layers"})
MAX_DEPTH = 1_024
EXPERT_KEYS = frozenset({"num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"})
MAX_EXPERTS = 4_096
MAX_INT = 2**40


class TreeSource(Protocol):
    """Where pasted configs get their Architecture (app.jobs.trees: a database cache in front of the helper)."""

    def architecture(self, config: dict[str, Any], task: str | None) -> Architecture:
        """The architecture of `config` built for `task` (None: the task its `architectures` names)."""


def library_versions() -> dict[str, str]:
    """Installed versions a tree depends on, read from package metadata (nothing is imported)."""
    found = {}
    for name in ("transformers", "peft", "torch"):
        try:
            found[name] = version(name).split("+")[0]
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def check_config_bounds(config: Any, loc: tuple[str, ...] = ("model_config",)) -> None:
    """A config.json small enough to build: an object with a model_type, bounded depth, experts and numbers."""
    if not isinstance(config, dict):
        raise FieldError(loc, "model_config must be a JSON object (the contents of config.json)", "dict_type")
    if loc == ("model_config",):
        model_type = config.get("model_type")
        if model_type is None:
            raise FieldError((*loc, "model_type"), "config.json has no model_type", "missing")
        if not isinstance(model_type, str):
            raise FieldError((*loc, "model_type"),
                             f"model_type must be a string such as \"llama\", got {describe(model_type)}", "string_type")
        check_nesting(config, loc, "model_config")
    for key, value in config.items():
        where = (*loc, key)
        if isinstance(value, dict):
            check_config_bounds(value, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            limit, reason = MAX_INT, "larger than any real model's"
            if key in DEPTH_KEYS:
                limit, reason = MAX_DEPTH, "deeper than any published model (they have at most a few hundred layers)"
            elif key in EXPERT_KEYS:
                limit, reason = MAX_EXPERTS, "more experts than any published model"
            if value > limit:
                raise FieldError(where, f"{key} of {describe(value)} is {reason}; the most accepted is {limit:,}",
                                 "less_than_equal")


def infer_task(config: dict[str, Any], mapped: Callable[[str], bool]) -> str:
    """The task a config.json's `architectures` names, else the first Auto class that knows its model_type."""
    architectures = config.get("architectures")
    first = architectures[0] if isinstance(architectures, list) and architectures else None
    if isinstance(first, str):
        for suffix, tasks in ARCHITECTURE_SUFFIXES:
            if first.endswith(suffix):
                for task in tasks:
                    if mapped(task):
                        return task
    for task in FALLBACK_TASKS:
        if mapped(task):
            return task
    raise FieldError(("model_config", "model_type"),
                     f"transformers has no model class for model_type {config.get('model_type')!r}", "unsupported_task")


def task_for(task_type: str | None) -> str | None:
    """The tree task a peft task_type asks for (None: infer it from the config)."""
    return TASK_OF_PEFT_TYPE.get(task_type) if task_type else None


def normalised_config(config: dict[str, Any]) -> str:
    """The config as canonical JSON without the keys that do not shape the model."""
    return json.dumps({k: v for k, v in config.items() if k not in CONFIG_ONLY_KEYS}, sort_keys=True,
                      separators=(",", ":"), default=str)


def tree_key(config: dict[str, Any], task: str | None, versions: dict[str, str]) -> str:
    """Cache key of a tree: the normalised config, the task asked for and the library versions."""
    text = json.dumps([normalised_config(config), task, versions], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def architecture_from_tree(tree: dict[str, Any]) -> Architecture:
    """The Architecture a tree describes (app.training.trees.describe_model wrote it)."""
    if not isinstance(tree, dict) or tree.get("format") != TREE_FORMAT:
        raise ValueError(f"not a module tree of format {TREE_FORMAT}")
    modules = []
    for name, cls, kind, n_in, n_out, kernel, groups, params in tree["modules"]:
        layer, template = split_layer(name)
        modules.append(Module(
            name=name, cls=cls, kind=kind, in_features=n_in, out_features=n_out,
            params=tuple(Param(p_name, tuple(shape), tied) for p_name, shape, tied in params),
            layer=layer, template=template, kernel=kernel, groups=groups,
        ))
    sizes = tree["sizes"]
    leaves = {module.leaf for module in modules}
    notes = []
    if any(module.kind == CONV1D for module in modules):
        notes.append("This model uses transformers' Conv1D, which stores weights as (in, out); peft forces "
                     "fan_in_fan_out=True for it and counts r*(in+out) as for nn.Linear.")
    if tree.get("moe_rewrite"):
        notes.append("transformers 5 stores each layer's experts as 3-D parameters, which peft reaches through "
                     "target_parameters; peft 0.21 rewrites the transformers-4 expert names "
                     f"({', '.join(sorted(tree['moe_rewrite']['renames']))}) into them for you.")
    elif any(len(p.shape) == 3 for module in modules for p in module.params):
        notes.append("Some weights are 3-D parameters (fused experts), not nn.Linear modules: all-linear does not "
                     "reach them; name them in target_parameters.")
    return Architecture(
        model_type=tree["model_type"],
        family=tree["model_class"],
        modules=tuple(modules),
        output_layer=tree.get("output_layer") or "",
        input_embedding=tree.get("input_embedding") or "",
        num_layers=sizes["num_layers"],
        hidden_size=sizes["hidden_size"],
        intermediate_size=sizes["intermediate_size"],
        num_attention_heads=sizes["num_attention_heads"],
        num_key_value_heads=sizes["num_key_value_heads"],
        head_dim=sizes["head_dim"],
        vocab_size=sizes["vocab_size"],
        tie_word_embeddings=sizes["tie_word_embeddings"],
        gated_mlp=bool(leaves & {"gate_proj", "gate_up_proj", "w1", "wi_0"}),
        num_experts=sizes.get("num_experts", 0),
        experts_per_token=sizes.get("experts_per_token", 0),
        notes=tuple(notes),
        task=tree["task"],
        classifier_head=tree.get("classifier_head"),
        default_target_modules=tuple(tree["default_target_modules"]) if tree.get("default_target_modules") else None,
        moe_renames=dict(tree["moe_rewrite"]["renames"]) if tree.get("moe_rewrite") else {},
        moe_fused={k: tuple(v) for k, v in tree["moe_rewrite"]["fused"].items()} if tree.get("moe_rewrite") else {},
        versions=dict(tree.get("versions", {})),
        refused_targets=dict(tree.get("refused_targets", {})),
    )
