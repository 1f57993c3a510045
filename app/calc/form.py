"""The calculator form: its fields, parsing a query string into a CalcRequest dict, and back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.calc.catalogue import Catalogue
from app.calc.compute import compute
from app.calc.errors import CalcInputError
from app.calc.request import CalcRequest
from app.calc.result import CalcResult
from app.calc.spec import INIT_CHOICES, TASK_TYPES
from app.calc.training_spec import TrainingSpec

CUSTOM_MODEL = "custom"
DEFAULT_MODEL = "smollm2-135m-instruct"
TRUE_WORDS = {"true", "on", "1", "yes"}
_PLAIN_NAMES = re.compile(r"^[\w.,\s-]*$")


@dataclass(frozen=True)
class FormField:
    """One input of the calculator form; `name` is the query parameter and the peft/transformers name."""

    name: str
    section: str  # lora | training
    kind: str  # int | number | names | list | ints | mapping | bool | choice
    label: str
    page: str | None = None
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    help: str = ""
    advanced: bool = False


FIELDS: tuple[FormField, ...] = (
    FormField("r", "lora", "int", "r (rank)", "r", placeholder="8"),
    FormField("lora_alpha", "lora", "number", "lora_alpha", "lora_alpha", placeholder="8"),
    FormField("lora_dropout", "lora", "number", "lora_dropout", "lora_dropout", placeholder="0.0"),
    FormField("target_modules", "lora", "names", "target_modules", "target_modules",
              placeholder="q_proj, v_proj  or  all-linear  or a regex", help="Empty: peft's default for the model."),
    FormField("use_rslora", "lora", "bool", "use_rslora", "use_rslora"),
    FormField("use_dora", "lora", "bool", "use_dora", "use_dora"),
    FormField("bias", "lora", "choice", "bias", "bias", choices=("none", "all", "lora_only")),
    FormField("lora_bias", "lora", "bool", "lora_bias", "lora_bias"),
    FormField("init_lora_weights", "lora", "choice", "init_lora_weights", "init_lora_weights",
              choices=("true", "false", *INIT_CHOICES)),
    FormField("exclude_modules", "lora", "names", "exclude_modules", "exclude_modules", placeholder="names or a regex", advanced=True),
    FormField("modules_to_save", "lora", "list", "modules_to_save", "modules_to_save", placeholder="lm_head, embed_tokens", advanced=True),
    FormField("layers_to_transform", "lora", "ints", "layers_to_transform", "layers_to_transform", placeholder="0, 1, 2", advanced=True),
    FormField("layers_pattern", "lora", "list", "layers_pattern", "layers_pattern", placeholder="layers", advanced=True),
    FormField("rank_pattern", "lora", "mapping", "rank_pattern", "rank_pattern", placeholder="q_proj=16, down_proj=4", advanced=True),
    FormField("alpha_pattern", "lora", "mapping", "alpha_pattern", "alpha_pattern", placeholder="q_proj=32", advanced=True),
    FormField("target_parameters", "lora", "list", "target_parameters", "target_parameters", placeholder="experts.gate_up_proj", advanced=True),
    FormField("loftq_config", "lora", "mapping", "loftq_config", "loftq_config", placeholder="loftq_bits=4, loftq_iter=1", advanced=True),
    FormField("fan_in_fan_out", "lora", "bool", "fan_in_fan_out", "fan_in_fan_out", advanced=True),
    FormField("task_type", "lora", "choice", "task_type", "task_type", choices=("", *TASK_TYPES), advanced=True),
    FormField("per_device_train_batch_size", "training", "int", "per_device_train_batch_size", "per_device_train_batch_size", placeholder="8"),
    FormField("gradient_accumulation_steps", "training", "int", "gradient_accumulation_steps", "gradient_accumulation_steps", placeholder="1"),
    FormField("max_seq_length", "training", "int", "max_seq_length", "max_seq_length", placeholder="1024"),
    FormField("gradient_checkpointing", "training", "bool", "gradient_checkpointing", "gradient_checkpointing"),
    FormField("base_dtype", "training", "choice", "base weights", "load_in_4bit",
              choices=("bf16", "fp16", "fp32", "int8", "nf4", "fp4")),
    FormField("bnb_4bit_use_double_quant", "training", "bool", "bnb_4bit_use_double_quant", "bnb_4bit_use_double_quant"),
    FormField("optimizer", "training", "choice", "optim", "optim",
              choices=tuple(TrainingSpec.model_fields["optimizer"].annotation.__args__)),
    FormField("devices", "training", "int", "devices (data parallel)", None, placeholder="1"),
    FormField("learning_rate", "training", "number", "learning_rate", "learning_rate", placeholder="2e-4"),
)
FIELD_BY_NAME = {form_field.name: form_field for form_field in FIELDS}
STATE_KEYS = ("model", "model_config", *FIELD_BY_NAME)


@dataclass
class FormOutcome:
    """The form's values as typed, errors by field, and the result when there is one."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    result: CalcResult | None = None
    request: CalcRequest | None = None


def _names(text: str) -> str | list[str] | None:
    """'' -> None (peft default); all-linear; a JSON list; a regex if it has regex characters; else a list of names."""
    text = text.strip()
    if not text:
        return None
    if text.lower() == "all-linear":
        return "all-linear"
    if text.startswith("["):
        names = parse_json(text)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError("a JSON list here must hold module names as strings")
        return names
    if not _PLAIN_NAMES.match(text):
        return text
    return [name for name in re.split(r"[,\s]+", text) if name]


def _mapping(text: str, name: str, numbers: bool) -> dict[str, Any]:
    """'key=value, key=value' or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        value = parse_json(text)
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a JSON object")
        return value
    result: dict[str, Any] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        key, sep, raw = part.rpartition("=")
        if not sep or not key.strip():
            raise ValueError(f"{name}: write key=value pairs separated by commas, got {part!r}")
        result[key.strip()] = _number(raw.strip(), f"{name}[{key.strip()!r}]") if numbers else raw.strip()
    return result


def parse_json(text: str) -> Any:
    """json.loads for a form field; anything it cannot read (nesting too deep for the parser, a number of more
    digits than Python converts) is a ValueError saying "not valid JSON", never another exception."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise ValueError("not valid JSON here: it is nested too deeply to read") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise ValueError("not valid JSON here: it holds a number too long to read") from None


def _number(text: str, name: str, whole: bool = False) -> int | float:
    try:
        return int(text)
    except ValueError:
        if whole:
            raise ValueError(f"{name} must be a whole number, got {text!r}") from None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


def _parse_value(form_field: FormField, text: str) -> Any:
    kind = form_field.kind
    if kind == "bool":
        return text.strip().lower() in TRUE_WORDS
    if kind == "int":
        return _number(text.strip(), form_field.name, whole=True)
    if kind == "number":
        return _number(text.strip(), form_field.name)
    if kind == "names":
        return _names(text)
    if kind == "list":
        return [item for item in re.split(r"[,\s]+", text.strip()) if item] or None
    if kind == "ints":
        return [_number(item, form_field.name, whole=True) for item in re.split(r"[,\s]+", text.strip()) if item] or None
    if kind == "mapping":
        return _mapping(text, form_field.name, numbers=True)
    if form_field.name == "init_lora_weights":
        return {"true": True, "false": False}.get(text, text)
    return text or None


def parse_field_text(name: str, text: str) -> Any:
    """One calculator field's text as its typed value (the job form reads LoRA fields the same way)."""
    return _parse_value(FIELD_BY_NAME[name], text)


def parse_query(params: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(request dict, errors by field, raw values) from query parameters; absent fields keep their defaults."""
    values = {key: str(params[key]) for key in STATE_KEYS if key in params}
    errors: dict[str, str] = {}
    request: dict[str, Any] = {"lora": {}, "training": {}}
    model = values.get("model", DEFAULT_MODEL) or DEFAULT_MODEL
    if model == CUSTOM_MODEL:
        try:
            request["model_config"] = parse_json(values.get("model_config", "") or "null")
            if not isinstance(request["model_config"], dict):
                errors["model_config"] = "paste the contents of a config.json: a JSON object"
        except ValueError as error:
            errors["model_config"] = str(error)
    else:
        request["model"] = model
    for form_field in FIELDS:
        raw = values.get(form_field.name)
        if form_field.kind == "bool":
            if raw is not None:
                request[form_field.section][form_field.name] = _parse_value(form_field, raw)
            continue
        if raw is None or not raw.strip():
            continue
        try:
            parsed = _parse_value(form_field, raw)
        except ValueError as error:
            errors[form_field.name] = str(error)
            continue
        if parsed is not None:
            request[form_field.section][form_field.name] = parsed
    return request, errors, values


def field_of(loc: tuple[Any, ...]) -> str:
    """The form field a validation error location points at."""
    parts = [part for part in loc if isinstance(part, str)]
    if not parts:
        return "model"
    if parts[0] in ("lora", "training") and len(parts) > 1:
        return parts[1]
    if parts[0] in ("model_config", "hf_config"):
        return "model_config"
    return parts[0]


def calculate(params: Mapping[str, str], catalogue: Catalogue) -> FormOutcome:
    """Parse, validate and compute; every problem lands on a field, never an exception."""
    request_dict, errors, values = parse_query(params)
    outcome = FormOutcome(values=values, errors=errors)
    try:
        request = CalcRequest.model_validate(request_dict)
        if errors:  # fields that did not parse were left out; report the rest, compute nothing
            return outcome
        outcome.request = request
        outcome.result = compute(request, catalogue)
    except ValidationError as error:
        for detail in error.errors():
            outcome.errors.setdefault(field_of(tuple(detail["loc"])), detail["msg"].removeprefix("Value error, "))
    except CalcInputError as error:
        outcome.errors[field_of(error.loc)] = error.message
    return outcome


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def to_query(lora: Mapping[str, Any], training: Mapping[str, Any] | None = None, model: str | None = None,
             model_config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Query parameters that reproduce a configuration on /calculator (defaults left out)."""
    query: dict[str, str] = {}
    if model_config is not None:
        query["model"] = CUSTOM_MODEL
        query["model_config"] = json.dumps(model_config, separators=(",", ":"))
    elif model is not None:
        query["model"] = model
    for section in (lora, training or {}):
        for name, value in section.items():
            form_field = FIELD_BY_NAME.get(name)
            if form_field is None or value is None or value == {} or value == []:
                continue
            if form_field.kind == "bool" and value is False:
                continue
            if form_field.kind == "mapping" and any(not isinstance(v, (int, float)) for v in value.values()):
                query[name] = json.dumps(value)
                continue
            query[name] = _format(value)
    return query
