"""SpecModel: the base of every field model, and the metadata each field carries (page, form hints)."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from app.spec.text import PARSERS, format_value

# model_validate(data, context=FROM_TEXT) reads form and query-string text; JSON stays strict ("8" is not 8).
FROM_TEXT = {"text": True}
JSON_SCHEMA_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def spec_field(default: Any = ..., *, help: str, page: str | None, label: str | None = None, placeholder: str = "",
               advanced: bool = False, kind: str | None = None, choices: tuple[Any, ...] = (), **constraints: Any) -> Any:
    """A pydantic Field with its help text, its encyclopedia page and its form hints, all in one place."""
    hints = {"label": label, "placeholder": placeholder, "advanced": advanced, "kind": kind, "choices": list(choices)}
    extra: dict[str, Any] = {"x-page": page}
    # numeric bounds in JSON Schema's words too: pydantic cannot attach them to a union (int | float) on its own
    extra |= {JSON_SCHEMA_BOUNDS[name]: value for name, value in constraints.items() if name in JSON_SCHEMA_BOUNDS}
    if any(hints.values()):
        extra["x-form"] = {key: value for key, value in hints.items() if value}
    if callable(default) and not isinstance(default, (bool, int, float, str)):
        return Field(default_factory=default, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class FieldMeta:
    """What the form builder and the docs read of one field."""

    name: str
    group: str
    kind: str  # bool | int | number | names | list | ints | mapping | choice | text
    label: str
    help: str
    page: str | None
    default: Any
    choices: tuple[Any, ...]
    optional: bool  # None is a value of its own (an empty input means None, not the default)
    placeholder: str
    advanced: bool


def members(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of a union annotation (Annotated unwrapped), and whether None is one of them."""
    parts = list(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else [annotation]
    unwrapped = [get_args(part)[0] if get_origin(part) is Annotated else part for part in parts]
    present = [part for part in unwrapped if part is not type(None)]
    return present, len(present) < len(unwrapped)


def _kind(present: list[Any]) -> str:
    """The input kind an annotation implies when no hint names it."""
    origins = {get_origin(part) or part for part in present}
    if present == [bool]:
        return "bool"
    if len(present) == 1 and get_origin(present[0]) is Literal:
        return "choice"
    if set(present) == {int}:
        return "int"
    if set(present) <= {int, float}:
        return "number"
    if origins == {dict}:
        return "mapping"
    if origins == {list, str}:
        return "names"
    if origins == {list, int}:
        return "ints"
    if origins == {list}:
        return "ints" if get_args(present[0]) == (int,) else "list"
    return "text"


def field_meta(name: str, info: FieldInfo, group: str) -> FieldMeta:
    """One field's metadata, read from its definition."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    hints = extra.get("x-form", {})
    present, optional = members(info.annotation)
    kind = hints.get("kind") or _kind(present)
    choices = tuple(hints.get("choices") or (get_args(present[0]) if kind == "choice" and present else ()))
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    return FieldMeta(name=name, group=group, kind=kind, label=hints.get("label", name), help=info.description or "",
                     page=extra.get("x-page"), default=default, choices=choices, optional=optional,
                     placeholder=hints.get("placeholder", ""), advanced=bool(hints.get("advanced")))


def fields_of(model: type[BaseModel], group: str) -> tuple[FieldMeta, ...]:
    """Every field of a model, in definition order."""
    return tuple(field_meta(name, info, group) for name, info in model.model_fields.items())


class SpecModel(BaseModel):
    """A group of fields: unknown keys refused; with context FROM_TEXT, form text is read by each field's kind."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: ValidationInfo) -> Any:
        if not (isinstance(value, str) and info.context and info.context.get("text")):
            return value
        meta = field_meta(info.field_name, cls.model_fields[info.field_name], "")
        if meta.kind == "text":
            return value
        if not value.strip() and meta.kind != "bool":
            return None if meta.optional else meta.default  # an empty input means "the default"
        try:
            return PARSERS[meta.kind](value)
        except ValueError as error:
            raise PydanticCustomError("text_parsing", str(error)) from None


def as_text(model: BaseModel, *, exclude_defaults: bool = True) -> dict[str, str]:
    """A model's fields as form text, the inverse of validating with FROM_TEXT; defaults left out unless asked."""
    return {name: format_value(value) for name, value in model.model_dump(exclude_defaults=exclude_defaults).items()}
