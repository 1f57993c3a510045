"""Explain an adapter_config.json: every key's meaning, default or not, problems, and the exact count when the model is known."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from app.calc.adapter_file import adapter_file_bytes, saved_tensors
from app.calc.adapter_weights import (
    AdapterWeights, WeightsFinding, WeightsHeader, compare_with_config, compare_with_prediction, read_weights, remarks,
)
from app.calc.catalogue import Catalogue, load_catalogue
from app.calc.compute import architecture_of_config, compute
from app.calc.trainable import count_trainable
from app.spec.errors import FieldError, check_nesting, describe
from app.calc.request import CalcRequest, calculator_query
from app.calc.dialects import Translation, describe_unrecognised, recognise
from app.calc.result import CalcResult
from app.calc.tree import TreeSource
from app.spec.base import field_meta
from app.spec.errors import errors_of, field_name
from app.spec.lora import LEGACY_KEYS, PEFT_VERSION, UNMODELLED_KEYS, LoraSpec
from app.spec.training import CalcTrainingSpec


class ExplainedKey(BaseModel):
    """One key of the adapter_config.json."""

    key: str
    value: str = Field(description="The value as JSON.")
    status: str = Field(description="default, changed, metadata, legacy or unknown; translated or tool for another tool's file.")
    meaning: str
    page: str | None = Field(None, description="Slug of the encyclopedia page.")
    default: str | None = Field(None, description="peft's default, as JSON.")
    modelled: bool = Field(False, description="Whether the calculator's numbers take this key into account.")


class Translated(BaseModel):
    """Another tool's config, as peft's and transformers' fields, and what does not carry over."""

    tool: str = Field(description="mlx-lm, Axolotl, LLaMA-Factory or torchtune.")
    source: str = Field(description="Where the tool documents its keys.")
    lora: dict[str, Any] = Field(description="The LoraConfig fields it amounts to.")
    training: dict[str, Any] = Field(description="The TrainingArguments (and hardware) fields it amounts to.")
    mapped: dict[str, str] = Field(description="The tool's key -> the field it became.")
    notes: list[str] = Field(description="What does not carry over, or needs care, in peft.")


class Explanation(BaseModel):
    """What an adapter_config.json says, and what it costs when the base model is known."""

    keys: list[ExplainedKey]
    problems: list[str] = Field(description="What peft would reject or cannot load.")
    notes: list[str]
    model_id: str | None = Field(None, description="The catalogue model the adapter matches, if any.")
    model_label: str | None = None
    result: CalcResult | None = Field(None, description="Exact counts, scaling and lints, when the model is known.")
    calculator_query: dict[str, str] | None = Field(None, description="Query string that opens /calculator with this adapter.")
    translated: Translated | None = Field(None, description="Set when the file is another tool's config, translated to peft.")
    weights: AdapterWeights | None = Field(None, description="What adapter_model.safetensors holds, when its header is given.")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _explain_key(key: str, value: Any) -> ExplainedKey:
    if key in LoraSpec.model_fields:
        meta = field_meta(key, LoraSpec.model_fields[key], "lora")
        default, meaning, page, metadata, modelled = meta.default, meta.help, meta.page, False, True
    elif key in UNMODELLED_KEYS:
        info = UNMODELLED_KEYS[key]
        default, meaning, page, metadata, modelled = info.default, info.meaning, info.page, info.metadata, False
    elif key in LEGACY_KEYS:
        return ExplainedKey(key=key, value=_json(value), status="legacy", meaning=LEGACY_KEYS[key])
    else:
        return ExplainedKey(
            key=key, value=_json(value), status="unknown",
            meaning=f"Not a LoraConfig field in peft {PEFT_VERSION}: written by a newer peft, another tool, or a typo. "
            "peft 0.21 ignores it, with a warning, when it loads the file.",
        )
    is_default = value == default or (value is None and default in (False, {}, None))
    status = "metadata" if metadata else ("default" if is_default else "changed")
    return ExplainedKey(key=key, value=_json(value), status=status, meaning=meaning, page=page,
                        default=_json(default), modelled=modelled)


def lora_fields_of(adapter_config: dict[str, Any]) -> dict[str, Any]:
    """The LoraSpec fields of an adapter_config, with nulls that mean "default" dropped."""
    fields = LoraSpec.model_fields
    return {
        key: value
        for key, value in adapter_config.items()
        if key in fields and not (value is None and fields[key].default is not None)
    }


def explain(
    adapter_config: Any, model_config: dict[str, Any] | None = None, catalogue: Catalogue | None = None,
    trees: TreeSource | None = None, weights: WeightsHeader | None = None,
) -> Explanation:
    """Annotate each key; compute counts if the base model is in the catalogue or its config.json is given.

    With the header of adapter_model.safetensors (`weights`), also what was saved and how it differs from the config.
    """
    if adapter_config is None and weights is not None:
        if model_config is not None:
            check_nesting(model_config, ("model_config",), "model_config")
        return Explanation(keys=[], problems=[], weights=_weights_report(weights, None, None, None, None, None),
                           notes=["Only the weights were given: add the adapter_config.json saved beside them to compare "
                                  "the two, and a base model for the exact predicted file."])
    explanation = _explain_config(adapter_config, model_config, catalogue, trees)
    if weights is not None:
        lora = explanation.translated.lora if explanation.translated else lora_fields_of(adapter_config)
        base_model = adapter_config.get("base_model_name_or_path")
        if explanation.translated:
            base_model = recognise(adapter_config).base_model
        explanation.weights = _weights_report(weights, lora, base_model, model_config, catalogue or load_catalogue(), trees)
    return explanation


def _explain_config(adapter_config: Any, model_config: dict[str, Any] | None, catalogue: Catalogue | None,
                    trees: TreeSource | None) -> Explanation:
    """The config alone: its keys, problems and counts."""
    if not isinstance(adapter_config, dict):
        raise FieldError(("adapter_config",), "an adapter_config.json is a JSON object", "dict_type")
    check_nesting(adapter_config, ("adapter_config",), "adapter_config")
    if model_config is not None:
        check_nesting(model_config, ("model_config",), "model_config")
    base_model = adapter_config.get("base_model_name_or_path")
    if base_model is not None and not isinstance(base_model, str):
        raise FieldError(
            ("adapter_config", "base_model_name_or_path"),
            f"base_model_name_or_path must be a string (a Hugging Face id or a path), got {describe(base_model)}",
            "string_type",
        )
    catalogue = catalogue or load_catalogue()
    translation = _recognised(adapter_config)
    if translation is not None:
        return _explain_translation(translation, adapter_config, model_config, catalogue, trees)
    keys = [_explain_key(key, value) for key, value in adapter_config.items()]
    problems: list[str] = []
    notes: list[str] = []
    if "peft_type" not in adapter_config:
        problems.append('no peft_type: PeftConfig.from_pretrained cannot load this file (peft writes "peft_type": "LORA").')
    peft_type = adapter_config.get("peft_type", "LORA")
    if peft_type != "LORA":
        problems.append(f"peft_type is {peft_type!r}: this page explains LoRA adapters (peft_type LORA).")
    unknown = [item.key for item in keys if item.status in ("unknown", "legacy")]
    if unknown:
        notes.append(f"peft {PEFT_VERSION} does not know {', '.join(unknown)}; it loads the file and ignores them with a warning.")
    unmodelled = [item.key for item in keys if item.status == "changed" and not item.modelled]
    if unmodelled:
        notes.append(f"Not reflected in the counts: {', '.join(unmodelled)}.")
    version = adapter_config.get("peft_version")
    if version and version != PEFT_VERSION:
        notes.append(f"Saved by peft {version}; the meanings and defaults here are peft {PEFT_VERSION}'s.")

    explanation = Explanation(keys=keys, problems=problems, notes=notes)
    return _counted(explanation, lora_fields_of(adapter_config), {}, base_model, model_config, catalogue, trees)


def _recognised(adapter_config: dict[str, Any]) -> Translation | None:
    """Another tool's config, translated; a file that is no adapter config at all is refused naming what it is."""
    if "peft_type" in adapter_config:
        return None
    translation = recognise(adapter_config)
    if translation is not None:
        return translation
    what = describe_unrecognised(adapter_config)
    if what is None and not any(key in LoraSpec.model_fields for key in adapter_config):
        what = ("not an adapter config: none of its keys is a LoraConfig field, and it is not an mlx-lm, Axolotl, "
                "LLaMA-Factory or torchtune LoRA config")
    if what is not None:
        raise FieldError(("adapter_config",), what, "not_an_adapter")
    return None


def _explain_translation(translation: Translation, adapter_config: dict[str, Any], model_config: dict[str, Any] | None,
                         catalogue: Catalogue, trees: TreeSource | None) -> Explanation:
    """Each key of the tool's file, the peft fields it amounts to, and the count when the model is known."""
    keys = []
    for key, value in adapter_config.items():
        became = next((target for source, target in translation.mapped.items() if source.split(".")[0] == key), None)
        keys.append(ExplainedKey(
            key=key, value=_json(value), status="translated" if became else "tool",
            meaning=f"{translation.tool}: becomes {became}." if became else f"{translation.tool}'s own setting; peft has no equivalent.",
        ))
    lora = dict(translation.lora)
    if translation.last_layers is not None:
        depth = _depth(model_config, catalogue.find(translation.base_model), trees)
        layers = translation.layers_for(depth) if depth else None
        if layers is not None:
            lora["layers_to_transform"] = layers
    explanation = Explanation(
        keys=keys, problems=[], notes=[f"This is a {translation.tool} config, not peft's adapter_config.json; "
                                       "below is what it amounts to in peft."],
        translated=Translated(tool=translation.tool, source=translation.source, lora=lora, training=translation.training,
                              mapped=translation.mapped, notes=translation.notes),
    )
    return _counted(explanation, lora, translation.training, translation.base_model, model_config, catalogue, trees)


def _depth(model_config: dict[str, Any] | None, entry, trees: TreeSource | None) -> int | None:
    if entry is not None:
        return entry.architecture.num_layers
    if model_config is not None and trees is not None:
        return trees.architecture(model_config, None).num_layers
    return None


def _counted(explanation: Explanation, lora: dict[str, Any], training: dict[str, Any], base_model: str | None,
             model_config: dict[str, Any] | None, catalogue: Catalogue, trees: TreeSource | None) -> Explanation:
    """Validate the LoRA fields and compute the exact count when the base model is known."""
    entry = None if model_config is not None else catalogue.find(base_model)
    problems, notes = explanation.problems, explanation.notes
    if entry is not None:
        explanation.model_id, explanation.model_label = entry.id, entry.name
    elif model_config is not None:
        explanation.model_label = "the pasted config.json"
    elif base_model:
        notes.append(
            f"{base_model!r} is not in the catalogue: paste its config.json to get "
            "the exact count."
        )
    try:
        spec = LoraSpec.model_validate(lora)
    except ValidationError as error:
        problems.extend(f"{field_name(item['loc'])}: {item['msg']}" for item in errors_of(error))
        return explanation
    try:
        training_spec = CalcTrainingSpec.model_validate(training)
    except ValidationError as error:
        problems.extend(f"{field_name(item['loc'])}: {item['msg']}" for item in errors_of(error))
        training_spec = CalcTrainingSpec()
    explanation.calculator_query = calculator_query(spec, training_spec if training else None,
                                                    model=entry.id if entry else None, model_config=model_config)
    if entry is None and model_config is None:
        return explanation
    try:
        request = CalcRequest(model=entry.id if entry else None, model_config=model_config, lora=spec, training=training_spec)
        explanation.result = compute(request, catalogue, trees)
    except FieldError as error:
        if model_config is not None and error.loc[:1] == ("model_config",):
            raise  # the pasted config.json is the caller's input, not a flaw of the adapter: refuse it with its field
        problems.append(error.message)
    except ValidationError as error:
        problems.append("; ".join(item["msg"] for item in errors_of(error)))
    return explanation


def _weights_report(header: WeightsHeader, lora: dict[str, Any] | None, base_model: Any, model_config: dict[str, Any] | None,
                    catalogue: Catalogue | None, trees: TreeSource | None) -> AdapterWeights:
    """The weights read from the header, against the config and, when the model is known, the exact predicted file."""
    spec = None
    if lora is not None:
        try:
            spec = LoraSpec.model_validate(lora)
        except ValidationError:
            spec = None  # the config's own problems are listed with its keys
    weights = read_weights(header, spec)
    findings = remarks(weights)
    if spec is not None:
        findings.extend(compare_with_config(weights, header, spec))
    entry = catalogue.find(base_model) if catalogue is not None and model_config is None else None
    if spec is not None and (entry is not None or model_config is not None) and weights.layout == "peft":
        try:
            arch = entry.architecture_for(spec.task_type, trees) if entry else architecture_of_config(model_config, spec.task_type, trees)
            count = count_trainable(spec, arch)
            fp32, bf16, _ = adapter_file_bytes(spec, arch, count)
            weights.predicted = compare_with_prediction(header, weights, saved_tensors(spec, arch, count), fp32, bf16)
        except (FieldError, ValidationError):
            pass  # the same failure is reported on the counts above
    if weights.predicted is not None:
        findings.append(_prediction_finding(weights))
    weights.findings = findings
    return weights


def _prediction_finding(weights: AdapterWeights) -> WeightsFinding:
    predicted = weights.predicted
    if predicted.matches:
        return WeightsFinding(code="size_matches", severity="info", message=(
            f"The file is exactly the {predicted.bytes:,} bytes ({predicted.tensors} tensors) the calculator predicts "
            f"for this config in {predicted.dtype}: it holds what the config says, no more and no less."))
    if not predicted.bytes:
        size = f"the file mixes dtypes ({', '.join(weights.dtypes)}), so no single-dtype size applies"
    else:
        size = f"the calculator predicts {predicted.bytes:,} bytes in {predicted.dtype}, the file has {weights.file_bytes:,}"
    parts = [size]
    for label, keys in (("missing", predicted.missing), ("not predicted", predicted.unexpected),
                        ("other shape", predicted.different_shapes)):
        if keys:
            parts.append(f"{label}: {', '.join(key.removeprefix('base_model.model.') for key in keys[:3])}"
                         + (" ..." if len(keys) > 3 else ""))
    return WeightsFinding(code="size_differs", severity="warning",
                          message="The file is not what this config saves on this model: " + "; ".join(parts) + ".")
