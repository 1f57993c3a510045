"""The job form: one input per JobCreate field, read from the models, and form strings turned into a JobCreate."""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError

from app.calc.form import parse_field_text
from app.jobs.schemas import JobCreate, JobLoraSpec, TrainingSpec

@dataclass(frozen=True)
class FormField:
    """One input of the job form; `name` is the peft or TrainingArguments name and the /params/<name> slug."""

    name: str
    group: str  # "lora" | "training"
    kind: str  # "checkbox" | "select" | "number" | "text"
    description: str
    default: Any
    choices: tuple[Any, ...] = ()
    number_step: str = "any"
    optional: bool = False

    def text(self, value: Any) -> str:
        """A value as the input shows it."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        if isinstance(value, dict):
            return json.dumps(value) if value else ""
        return str(value)


def _members(annotation: Any) -> tuple[list[Any], bool]:
    """The non-None members of a union annotation (Annotated unwrapped), and whether None is one of them."""
    members = list(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else [annotation]
    unwrapped = [get_args(member)[0] if get_origin(member) is Annotated else member for member in members]
    present = [member for member in unwrapped if member is not type(None)]
    return present, len(present) < len(unwrapped)


def _field(name: str, group: str, info) -> FormField:
    members, optional = _members(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    description = info.description or ""
    only = members[0] if len(members) == 1 else None
    if only is bool:
        return FormField(name, group, "checkbox", description, default, optional=optional)
    if get_origin(only) is Literal:
        return FormField(name, group, "select", description, default, choices=get_args(only), optional=optional)
    if set(members) <= {int, float}:
        step = "1" if members == [int] else "any"
        return FormField(name, group, "number", description, default, number_step=step, optional=optional)
    return FormField(name, group, "text", description, default, optional=optional)


# The form's inputs that are not LoRA or training fields
OTHER_INPUTS = ("model", "dataset", "dataset_jsonl")


@functools.cache
def form_fields() -> tuple[FormField, ...]:
    """Every LoRA and training field, in model order (read from the models once)."""
    lora = [_field(name, "lora", info) for name, info in JobLoraSpec.model_fields.items()]
    training = [_field(name, "training", info) for name, info in TrainingSpec.model_fields.items()]
    return (*lora, *training)


def prefill(query: Mapping[str, str]) -> dict[str, str]:
    """The form's values: each field's default, replaced by the URL query where it names the field."""
    values = {field.name: field.text(field.default) for field in form_fields()}
    for key in (*OTHER_INPUTS, *values):
        if key in query:
            values[key] = query[key]
    return values


def query_for(config: Mapping[str, Any]) -> dict[str, str]:
    """A job's stored LoRA and training config as form values, for a 'run again' link."""
    fields = {field.name: field for field in form_fields()}
    return {
        name: fields[name].text(value)
        for group in ("lora", "training")
        for name, value in config.get(group, {}).items()
        if name in fields
    }


class FormErrors(ValueError):
    """Field name -> message, for inline display."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


def parse_form(form: Mapping[str, str]) -> JobCreate:
    """The submitted form as a validated JobCreate; FormErrors naming each bad field."""
    errors: dict[str, str] = {}
    payload: dict[str, Any] = {"lora": {}, "training": {}}
    for field in form_fields():
        raw = form.get(field.name)
        try:
            value = _parse_value(field, raw)
        except ValueError as error:
            errors[field.name] = str(error)
            continue
        if value is not _DEFAULT:
            payload[field.group][field.name] = value
    payload["model"] = form.get("model", "")
    jsonl = (form.get("dataset_jsonl") or "").strip()
    payload["dataset_jsonl"] = jsonl or None
    payload["dataset"] = None if jsonl else (form.get("dataset") or None)
    # Validate what did parse as well, so one round trip shows every bad field, not only the unreadable ones.
    try:
        request = JobCreate.model_validate(payload)
    except ValidationError as error:
        raise FormErrors({field_name(item["loc"]): item["msg"] for item in error.errors()} | errors) from error
    if errors:
        raise FormErrors(errors)
    return request


_DEFAULT = object()


def field_name(loc: tuple) -> str:
    """The form input a 422 location points at."""
    names = [part for part in loc if isinstance(part, str) and part not in ("lora", "training")]
    return names[0] if names else "form"


def _parse_value(field: FormField, raw: str | None) -> Any:
    if field.kind == "checkbox":
        # an unticked box sends nothing; a hidden "false" input precedes each box so both states arrive
        return raw in ("true", "on", "1")
    text = (raw or "").strip()
    if not text:
        if field.optional:
            return None
        return _DEFAULT
    if field.kind == "select":
        return text
    if field.kind == "number":
        try:
            # an integer stays an int where the field also takes floats (lora_alpha 16, not 16.0)
            return int(text) if field.number_step == "1" or text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a {'whole number' if field.number_step == '1' else 'number'}") from None
    # every text input is a LoRA field the calculator also has (a test holds this): read it the same way,
    # so calculator links carry over
    return parse_field_text(field.name, text)
