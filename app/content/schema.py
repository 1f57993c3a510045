"""Front matter models for parameter pages and guides."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")

def _slug_shape(value: str) -> str:
    if not SLUG_PATTERN.match(value):
        raise ValueError(f"slug {value!r} must be lowercase letters, digits, '_' or '-'")
    return value


Slug = Annotated[str, AfterValidator(_slug_shape)]
Owner = Literal[
    "LoraConfig",
    "TrainingArguments",
    "BitsAndBytesConfig",
    "target module",
    "Lorapedia job",
]
Kind = Literal["lora", "training", "target-module", "quantization"]
ValueType = Literal["int", "float", "bool", "str", "enum", "list[str]", "str | list[str]", "dict", "list[int]", "int | list[int]"]


class Reference(BaseModel):
    """A paper (with arXiv id) or a documentation page that a page cites."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3)
    arxiv: str | None = Field(default=None, pattern=r"^\d{4}\.\d{4,5}$")
    url: str | None = Field(default=None, pattern=r"^https://")

    @model_validator(mode="after")
    def _needs_a_locator(self) -> "Reference":
        if not self.arxiv and not self.url:
            raise ValueError("a reference needs an arxiv id or a url")
        return self


class Recommendation(BaseModel):
    """A recommended value and who recommends it."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1)
    source: str = Field(min_length=3)
    url: str | None = Field(default=None, pattern=r"^https://")


class Allowed(BaseModel):
    """The allowed values of a field: a numeric range or a list of choices."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    values: list[Any] | None = None

    def describe(self) -> str:
        """The allowed values in words, e.g. "≥ 1", "≥ 0 and < 1", or a list of choices."""
        if self.values is not None:
            return ", ".join(json.dumps(value) for value in self.values)
        bounds = []
        if self.min is not None:
            bounds.append(("> " if self.min_exclusive else "≥ ") + _number(self.min))
        if self.max is not None:
            bounds.append(("< " if self.max_exclusive else "≤ ") + _number(self.max))
        return " and ".join(bounds) or "any"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class ParamFrontMatter(BaseModel):
    """Front matter of content/params/<slug>.md."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    slug: Slug
    field: str = Field(min_length=1, description="the name as peft or transformers spells it")
    owner: Owner
    kind: Kind
    type: ValueType | None = None
    default: Any = None
    has_default: bool = Field(default=True, description="False for target modules, which have no default")
    default_source: str | None = None
    allowed: Allowed | None = None
    summary: str = Field(min_length=20, max_length=200)
    related: list[str] = Field(default_factory=list)
    references: list[Reference] = Field(min_length=1)
    recommendations: list[Recommendation] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list, description="other spellings people search for")

    @model_validator(mode="after")
    def _default_is_sourced(self) -> "ParamFrontMatter":
        if self.has_default and not self.default_source:
            raise ValueError("default_source is required when the field has a default")
        return self


class GuideFrontMatter(BaseModel):
    """Front matter of content/guides/<slug>.md."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    slug: Slug
    summary: str = Field(min_length=20, max_length=200)
    related: list[str] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    order: int = 100
    symptoms: list[Annotated[str, Field(min_length=3, max_length=120)]] = Field(
        default_factory=list, max_length=30,
        description="what people see or type (error messages, curve shapes): makes the guide a troubleshooting guide",
    )


SynonymEntry = Annotated[str, Field(min_length=1, max_length=60)]


class SynonymsFile(BaseModel):
    """content/search/synonyms.yaml: groups of words and phrases a search treats as the same."""

    model_config = ConfigDict(extra="forbid")

    groups: list[Annotated[list[SynonymEntry], Field(min_length=2, max_length=20)]] = Field(max_length=500)
