"""The model catalogue: content/models/<id>.json (real config.json files) plus catalogue.yaml (display metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from app.calc.errors import CalcInputError

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "content" / "models"
METADATA_FILE = "catalogue.yaml"


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
        raise CalcInputError(
            ("model",), f"no catalogue model {model_id!r}; known: {', '.join(m.id for m in self.models)}", "unknown_model"
        )

    def find(self, name_or_path: str | None) -> CatalogueModel | None:
        """The model a base_model_name_or_path refers to, by id, Hugging Face id or alias."""
        if not name_or_path:
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


@lru_cache(maxsize=4)
def load_catalogue(directory: Path = DEFAULT_DIR) -> Catalogue:
    """Read catalogue.yaml and each <id>.json; a missing or extra config file is an error at start-up."""
    entries = yaml.safe_load((directory / METADATA_FILE).read_text(encoding="utf-8"))
    models = []
    for entry in entries:
        config = json.loads((directory / f"{entry['id']}.json").read_text(encoding="utf-8"))
        models.append(
            CatalogueModel(
                id=entry["id"],
                name=entry["name"],
                hf_id=entry.get("hf_id"),
                licence=entry["licence"],
                size=entry["size"],
                config=config,
                aliases=tuple(entry.get("aliases", ())),
                note=entry.get("note", ""),
            )
        )
    listed = {model.id for model in models}
    on_disk = {path.stem for path in directory.glob("*.json")}
    if listed != on_disk:
        raise ValueError(f"{directory}: catalogue.yaml and the config files differ: {sorted(listed ^ on_disk)}")
    return Catalogue(tuple(models))
