"""The one form builder: inputs read from the spec models, submitted text validated by the same models as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from app.calc import Catalogue, CalcRequest, CalcResult, compute
from app.calc.request import CUSTOM_MODEL, DEFAULT_MODEL
from app.calc.tree import TreeSource
from app.spec import FROM_TEXT, CalcTrainingSpec, FieldError, FieldMeta, JobCreate, JobLoraSpec, JobTrainingSpec, LoraSpec, fields_of
from app.spec.errors import by_field, check_nesting, errors_of
from app.spec.text import format_value, parse_json

CALCULATOR_FIELDS: tuple[FieldMeta, ...] = (*fields_of(LoraSpec, "lora"), *fields_of(CalcTrainingSpec, "training"))
JOB_FIELDS: tuple[FieldMeta, ...] = (*fields_of(JobLoraSpec, "lora"), *fields_of(JobTrainingSpec, "training"))
CALCULATOR_FIELD_NAMES = frozenset(meta.name for meta in CALCULATOR_FIELDS)
JOB_FIELD_NAMES = frozenset(meta.name for meta in JOB_FIELDS)
JOB_INPUTS = ("model", "dataset", "dataset_jsonl")  # the job form's inputs that are not LoRA or training fields
JOB_DEFAULT_TEXT = {meta.name: format_value(meta.default) for meta in JOB_FIELDS}  # each job input's text when left alone


@dataclass
class FormOutcome:
    """A submitted form: the text as typed, the reason per bad input, and what validated."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    request: Any = None
    result: CalcResult | None = None


def prefill(fields: tuple[FieldMeta, ...], query: Mapping[str, str], extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Each input's text: its default, replaced by the query where it names the input."""
    values = {meta.name: format_value(meta.default) for meta in fields}
    return values | {key: str(query[key]) for key in (*extra, *values) if key in query}


def grouped(fields: tuple[FieldMeta, ...], submitted: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The submitted text of each field under its group (lora, training), as the models nest them."""
    payload: dict[str, dict[str, str]] = {}
    for meta in fields:
        if meta.name in submitted:
            payload.setdefault(meta.group, {})[meta.name] = submitted[meta.name]
    return payload


def validate(model: type[BaseModel], payload: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """(instance, {}) or (None, reason per input): form text through the same model as JSON."""
    try:
        return model.model_validate(payload, context=FROM_TEXT), {}
    except ValidationError as error:
        return None, by_field(errors_of(error))


def calculator_form(params: Mapping[str, str], catalogue: Catalogue, trees: TreeSource | None = None) -> FormOutcome:
    """Read, validate and compute the calculator's query string; every problem lands on an input."""
    names = ("model", "model_config", *(meta.name for meta in CALCULATOR_FIELDS))
    outcome = FormOutcome(values={key: str(params[key]) for key in names if key in params})
    payload: dict[str, Any] = grouped(CALCULATOR_FIELDS, outcome.values)
    model = outcome.values.get("model") or DEFAULT_MODEL
    if model == CUSTOM_MODEL:
        try:
            config = parse_json(outcome.values.get("model_config", "") or "null")
            if not isinstance(config, dict):
                raise ValueError("paste the contents of a config.json: a JSON object")
            check_nesting(config, ("model_config",), "model_config")
            payload["model_config"] = config
        except ValueError as error:
            outcome.errors["model_config"] = error.message if isinstance(error, FieldError) else str(error)
    else:
        payload["model"] = model
    request, errors = validate(CalcRequest, payload)
    outcome.errors = errors | outcome.errors
    if request is None or outcome.errors:
        return outcome
    outcome.request = request
    try:
        outcome.result = compute(request, catalogue, trees)
    except FieldError as error:
        outcome.errors = by_field([error.as_error()])
    return outcome


def job_form(submitted: Mapping[str, str]) -> FormOutcome:
    """The job form's text as a validated JobCreate, or the reason per input; one round trip shows every bad input."""
    payload: dict[str, Any] = grouped(JOB_FIELDS, submitted)
    jsonl = (submitted.get("dataset_jsonl") or "").strip()
    # the dataset list always submits a choice; pasted rows win over it
    payload |= {"model": submitted.get("model", ""), "dataset_jsonl": jsonl or None,
                "dataset": None if jsonl else (submitted.get("dataset") or None)}
    request, errors = validate(JobCreate, payload)
    return FormOutcome(values=dict(submitted), errors=errors, request=request)
