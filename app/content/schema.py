"""Front matter models for parameter pages and guides."""

from __future__ import annotations

import datetime
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
    "peft function",
    "target module",
    "Lorapedia job",
    "Lorapedia calculator",
]
Kind = Literal["lora", "training", "target-module", "quantization"]
ValueType = Literal[
    "int", "float", "bool", "str", "enum", "list[str]", "str | list[str]", "dict", "list[int]", "int | list[int]",
    "list[tuple[int, int]]", "list[int] | dict", "function",
]
ARXIV_ID = r"^\d{4}\.\d{4,5}$"

# The two "which way to move it" sections of a parameter page depend on what kind of value the field holds:
# (heading, anchor, older anchor kept as an alias so links made before the rename still land).
CHANGE_SECTIONS: dict[str, tuple[tuple[str, str, str | None], tuple[str, str, str | None]]] = {
    "number": (("Raising it", "raising-it", None), ("Lowering it", "lowering-it", None)),
    "bool": (("Turning it on", "turning-it-on", "raising-it"), ("Turning it off", "turning-it-off", "lowering-it")),
    "enum": (("Changing it", "changing-it", "raising-it"), ("Keeping the default", "keeping-the-default", "lowering-it")),
    "list": (("Listing more", "listing-more", "raising-it"), ("Listing fewer", "listing-fewer", "lowering-it")),
    "module": (("Adapting it", "adapting-it", "adding-it"), ("Leaving it out", "leaving-it-out", None)),
    "function": (("Calling it", "calling-it", None), ("Skipping it", "skipping-it", None)),
}
VALUE_KIND = {
    "bool": "bool", "enum": "enum", "function": "function",
    "list[str]": "list", "str | list[str]": "list", "int | list[int]": "list", "list[int]": "list",
    "list[tuple[int, int]]": "list", "list[int] | dict": "list",
}


class Reference(BaseModel):
    """A paper (with arXiv id) or a documentation page that a page cites."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3)
    arxiv: str | None = Field(default=None, pattern=ARXIV_ID)
    url: str | None = Field(default=None, pattern=r"^https://")

    @model_validator(mode="after")
    def _needs_a_locator(self) -> "Reference":
        if not self.arxiv and not self.url:
            raise ValueError("a reference needs an arxiv id or a url")
        return self


class Recommendation(BaseModel):
    """A recommended value, who recommends it, where to read it, and when that source was last checked."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1)
    source: str = Field(min_length=3)
    url: str | None = Field(default=None, pattern=r"^https://")
    arxiv: str | None = Field(default=None, pattern=ARXIV_ID)
    checked: datetime.date = Field(description="the day the source was last read for this row")
    history: str | None = Field(default=None, min_length=10, description="how this advice has changed over time")

    @model_validator(mode="after")
    def _needs_a_locator(self) -> "Recommendation":
        if not self.arxiv and not self.url:
            raise ValueError("a recommendation needs a url or an arxiv id for its source")
        return self


class ValuePattern(BaseModel):
    """A family of string choices such as pissa_niter_<K>: how it is written and the regex a real value matches."""

    model_config = ConfigDict(extra="forbid")

    shape: str = Field(min_length=3, description='as shown, e.g. "pissa_niter_<K>"')
    regex: str = Field(min_length=3, max_length=200)
    meaning: str = Field(min_length=5, description='what the placeholder stands for, e.g. "K fast-SVD iterations"')
    example: str = Field(min_length=1)

    @model_validator(mode="after")
    def _example_matches(self) -> "ValuePattern":
        if not re.fullmatch(self.regex, self.example):
            raise ValueError(f"example {self.example!r} does not match {self.regex!r}")
        return self


class Allowed(BaseModel):
    """The allowed values of a field: a numeric range, a list of choices, and families of string choices."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    values: list[Any] | None = None
    patterns: list[ValuePattern] = Field(default_factory=list)

    def describe(self) -> str:
        """The allowed values in words, e.g. "≥ 1", "≥ 0 and < 1", or a list of choices."""
        if self.values is not None:
            families = [f"{family.shape} ({family.meaning}, e.g. {json.dumps(family.example)})" for family in self.patterns]
            return ", ".join([*(json.dumps(value) for value in self.values), *families])
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
    function: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$", description="the peft function, for owner 'peft function'")

    @model_validator(mode="after")
    def _default_is_sourced(self) -> "ParamFrontMatter":
        if self.has_default and not self.default_source:
            raise ValueError("default_source is required when the field has a default")
        if (self.owner == "peft function") != (self.function is not None):
            raise ValueError("function is required with owner 'peft function' and allowed with it only")
        return self

    def value_kind(self) -> str:
        """What kind of value the field holds, which decides the page's two "which way to move it" sections."""
        if self.kind == "target-module":
            return "module"
        return VALUE_KIND.get(self.type or "", "number")

    def required_sections(self) -> list[tuple[str, str]]:
        """The (heading, anchor) pairs every page of this kind has, in order."""
        more, less = CHANGE_SECTIONS[self.value_kind()]
        return [("What it is", "what-it-is"), ("How it works", "how-it-works"), more[:2], less[:2],
                ("Recommended values", "recommended-values"), ("Interactions", "interactions"), ("Pitfalls", "pitfalls")]

    def anchor_aliases(self) -> dict[str, str]:
        """Older anchors of renamed sections: {section anchor: alias anchor}."""
        return {anchor: alias for _, anchor, alias in CHANGE_SECTIONS[self.value_kind()] if alias}


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
