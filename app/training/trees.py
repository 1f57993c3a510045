"""Module trees from transformers itself: a config.json's model built on the meta device, described as plain data.

The web process never imports this module; it runs `python -m app.training.trees` (JSON lines on stdin and
stdout, one request per line) through app.jobs.trees. The tree is what app.calc.tree reads.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
import yaml
from transformers import AutoConfig, PreTrainedModel
from transformers.pytorch_utils import Conv1D

from app.calc.architecture import Architecture
from app.calc.tree import (
    ALL_TASKS,
    CONFIG_ONLY_KEYS,
    TREE_FORMAT,
    TreeError,
    architecture_from_tree,
    check_config_bounds,
    infer_task,
    library_versions,
)

logger = logging.getLogger(__name__)

# peft task_type / our task -> the Auto class a user loads for it
AUTO_CLASSES = {
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "seq-cls": "AutoModelForSequenceClassification",
    "token-cls": "AutoModelForTokenClassification",
    "question-ans": "AutoModelForQuestionAnswering",
    "image-text-to-text": "AutoModelForImageTextToText",
    "feature-extraction": "AutoModel",
}
assert set(AUTO_CLASSES) == set(ALL_TASKS)
MAX_MODULES = 200_000  # a tree beyond this is refused (10x the largest published model's module count)


def _auto_class(task: str):
    return getattr(transformers, AUTO_CLASSES[task])


def _mapped(task: str, config) -> bool:
    mapping = _auto_class(task)._model_mapping
    try:
        mapping[type(config)]
    except KeyError:
        return False
    return True


def hf_config(config: dict[str, Any]):
    """The transformers config object for a config.json dict; never runs remote code."""
    check_config_bounds(config)
    model_type = config["model_type"]
    try:
        config_class = transformers.CONFIG_MAPPING[model_type]
    except KeyError:
        raise TreeError(("model_config", "model_type"),
                        f"model_type {model_type!r} is not known to transformers {transformers.__version__} "
                        "(models that need trust_remote_code are never built here)", "unsupported_model_type") from None
    # A deep copy: transformers writes into nested dicts (rope_scaling gains rope_theta), and the
    # caller's dict may be the catalogue's cached one.
    fields = copy.deepcopy({key: value for key, value in config.items() if key not in CONFIG_ONLY_KEYS})
    try:
        with _quiet():
            return config_class.from_dict(fields)
    except Exception as error:  # noqa: BLE001  transformers raises many types for a bad config
        named = re.search(r"field '(\w+)'", str(error))
        key = named.group(1) if named and named.group(1) in config else None
        raise TreeError(("model_config", key) if key else ("model_config",),
                        f"transformers cannot read this {model_type} config: {_reason(error)}", "invalid_config") from None


def build_model(config: dict[str, Any], task: str | None = None, device: str = "meta") -> tuple[torch.nn.Module, str]:
    """The model for `task` (inferred from the config when None) on `device` (meta: no memory), and the task used."""
    configuration = hf_config(config)
    task = task or infer_task(config, lambda candidate: _mapped(candidate, configuration))
    if task not in AUTO_CLASSES:
        raise TreeError(("task",), f"unknown task {task!r}; one of {', '.join(AUTO_CLASSES)}", "enum")
    if not _mapped(task, configuration):
        raise TreeError(("model_config", "model_type"),
                        f"transformers {transformers.__version__} has no {AUTO_CLASSES[task]} for model_type "
                        f"{config['model_type']!r}", "unsupported_task")
    try:
        with _quiet(), torch.device(device):
            model = _auto_class(task).from_config(configuration)
    except TreeError:
        raise
    except Exception as error:  # noqa: BLE001  a config transformers accepts may still fail to build
        raise TreeError(("model_config",), f"transformers cannot build {config['model_type']} from this config: "
                        f"{_reason(error)}", "unbuildable") from None
    return model, task


def describe_model(model: torch.nn.Module, config: dict[str, Any], task: str) -> dict[str, Any]:
    """The tree of a built model: modules with kinds, features and own parameters, and what peft will do to it."""
    owner: dict[int, str] = {}
    modules = []
    for name, module in model.named_modules():
        if not name:
            continue
        if len(modules) >= MAX_MODULES:
            raise TreeError(("model_config",), f"the model has more than {MAX_MODULES:,} modules", "too_large")
        params = []
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{name}.{param_name}"
            tied = owner.setdefault(id(param), full)
            params.append([param_name, list(param.shape), None if tied == full else tied])
        modules.append([name, type(module).__name__, *_kind(module), params])
    root_params = [[n, list(p.shape), None] for n, p in model.named_parameters(recurse=False)]
    if root_params:
        raise TreeError(("model_config",), "the model owns parameters outside any submodule", "unsupported")
    return {
        "format": TREE_FORMAT,
        "model_type": config["model_type"],
        "task": task,
        "model_class": type(model).__name__,
        "versions": library_versions(),
        "modules": modules,
        "output_layer": _module_name(model, _call(model, "get_output_embeddings")),
        "input_embedding": _module_name(model, _call(model, "get_input_embeddings")),
        "classifier_head": _classifier_head(model),
        "default_target_modules": _default_targets(config["model_type"]),
        "moe_rewrite": _moe_rewrite(config["model_type"]),
        "refused_targets": _refused_targets(model, modules),
        "sizes": _sizes(model),
    }


class InProcessTrees:
    """A TreeSource that builds trees in this process (benchmarks and tests may import torch; the web process may not)."""

    def architecture(self, config: dict[str, Any], task: str | None) -> Architecture:
        """Build the tree now."""
        return architecture_from_tree(build_tree(config, task))


def build_tree(config: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """The tree of a config.json's model, built on the meta device."""
    model, task = build_model(config, task)
    return describe_model(model, config, task)


def _kind(module: torch.nn.Module) -> list[Any]:
    """[kind, in, out, kernel elements, groups] as peft would see the layer."""
    if isinstance(module, torch.nn.Embedding):
        return ["embedding", module.num_embeddings, module.embedding_dim, 1, 1]
    if isinstance(module, Conv1D):
        return ["conv1d", module.weight.shape[0], module.weight.shape[1], 1, 1]
    if isinstance(module, torch.nn.Linear):
        return ["linear", module.in_features, module.out_features, 1, 1]
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        return ["conv", module.in_channels, module.out_channels, math.prod(module.kernel_size), module.groups]
    return ["other", 0, 0, 1, 1]


def _call(model: torch.nn.Module, method: str):
    if not isinstance(model, PreTrainedModel):
        return None
    try:
        return getattr(model, method)()
    except (NotImplementedError, AttributeError):
        return None


def _module_name(model: torch.nn.Module, target: Any) -> str | None:
    if target is None:
        return None
    return next((name for name, module in model.named_modules() if module is target and name), None)


def _classifier_head(model: torch.nn.Module) -> str | None:
    """What peft's all-linear leaves out under SEQ_CLS when the model has no output embeddings."""
    from peft.utils.constants import SEQ_CLS_HEAD_NAMES

    for attribute in SEQ_CLS_HEAD_NAMES:
        head = getattr(model, attribute, None)
        if isinstance(head, torch.nn.Module):
            return _module_name(model, head)
    return None


def _default_targets(model_type: str) -> list[str] | None:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    defaults = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return sorted(defaults) if defaults is not None else None


def _moe_rewrite(model_type: str) -> dict[str, Any] | None:
    """peft 0.21's transformers-5 rewrite for this model type: v4 names -> target_parameters, fused groups."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    from peft.utils import transformers_weight_conversion as conversion

    if get_checkpoint_conversion_mapping(model_type) is None:
        return None
    base = conversion._MODEL_TO_CONVERSION_PATTERN.get(model_type)
    renames = conversion._MOE_TARGET_MODULE_MAPPING.get(base)
    fused = conversion._MOE_FUSED_TARGETS.get(base, {})
    if not renames or not fused:
        return None
    return {"renames": dict(renames), "fused": {name: list(parts) for name, parts in fused.items()}}


def _refused_targets(model: torch.nn.Module, modules: list[list[Any]]) -> dict[str, str]:
    """Leaf names peft refuses to adapt on this model type (Mamba's out_proj...), with peft's reason."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _check_lora_target_modules_mamba

    refused = {}
    for leaf in sorted({row[0].rpartition(".")[2] for row in modules if row[2] != "other"}):
        try:
            _check_lora_target_modules_mamba(LoraConfig(), model, leaf)
        except ValueError as error:
            refused[leaf] = _reason(error)
    return refused


SIZE_KEYS = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "moe_intermediate_size"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "experts_per_token": ("num_experts_per_tok", "moe_topk"),
}


def _sizes(model: torch.nn.Module) -> dict[str, Any]:
    """The text model's sizes the memory estimate reads (0 where the config has no such size)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    sizes: dict[str, Any] = {}
    for key, names in SIZE_KEYS.items():
        value = next((getattr(config, name) for name in names if isinstance(getattr(config, name, None), int)), 0)
        sizes[key] = int(value)
    if sizes["intermediate_size"] == 0 and sizes["hidden_size"]:
        sizes["intermediate_size"] = 4 * sizes["hidden_size"]
    if not sizes["num_key_value_heads"]:
        sizes["num_key_value_heads"] = sizes["num_attention_heads"]
    if not sizes["head_dim"] and sizes["num_attention_heads"]:
        sizes["head_dim"] = sizes["hidden_size"] // sizes["num_attention_heads"]
    sizes["tie_word_embeddings"] = bool(getattr(model.config, "tie_word_embeddings", False))
    return sizes


def _reason(error: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _quiet():
    """transformers warns on stdout/stderr about configs; the protocol owns stdout."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One protocol answer: {"tree": ...} or {"error": {"loc", "message", "type"}}."""
    try:
        config = request.get("config")
        if not isinstance(config, dict):
            raise TreeError(("model_config",), "model_config must be a JSON object (the contents of config.json)", "dict_type")
        task = request.get("task")
        return {"id": request.get("id"), "tree": build_tree(config, task)}
    except TreeError as error:
        return {"id": request.get("id"), "error": {"loc": list(error.loc), "message": error.message, "type": error.kind}}


def serve_lines(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Answer one JSON request per line until stdin closes; the first line out says the helper is ready."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    sys.stdout = sys.stderr  # whatever a library prints must not reach the protocol
    stdout.write(json.dumps({"ready": True, "versions": library_versions()}) + "\n")
    stdout.flush()
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            request = {"config": None}
        stdout.write(json.dumps(answer(request if isinstance(request, dict) else {"config": None})) + "\n")
        stdout.flush()


def catalogue_tree(directory: Path, model_id: str, task: str | None) -> dict[str, Any]:
    """The tree of one catalogue config, as shipped (versions left out, so a library upgrade alone changes nothing)."""
    config = json.loads((directory / f"{model_id}.json").read_text(encoding="utf-8"))
    tree = build_tree(config, task)
    tree.pop("versions")
    return tree


def dump_tree(tree: dict[str, Any]) -> str:
    """A tree as stored in content/models/trees: one module per line, so diffs stay readable."""
    head = {key: value for key, value in tree.items() if key != "modules"}
    lines = [json.dumps(module, separators=(",", ":")) for module in tree["modules"]]
    return (json.dumps(head, sort_keys=True, indent=1)[:-2] + ',\n "modules": [\n' + ",\n".join(lines) + "\n ]\n}\n")


def write_catalogue_trees(directory: Path, check: bool = False) -> list[str]:
    """Build every catalogue model's tree; write the ones that differ (or only list them with `check`)."""
    entries = yaml.safe_load((directory / "catalogue.yaml").read_text(encoding="utf-8"))
    (directory / "trees").mkdir(exist_ok=True)
    changed = []
    for entry in entries:
        text = dump_tree(catalogue_tree(directory, entry["id"], entry.get("task")))
        path = directory / "trees" / f"{entry['id']}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(entry["id"])
            if not check:
                path.write_text(text, encoding="utf-8")
    return changed


if __name__ == "__main__":
    serve_lines()
