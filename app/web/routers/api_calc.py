"""API: the calculator (POST /api/calc), the model catalogue and "explain my adapter", for tools and tests."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from app.calc import FieldError, CalcRequest, CalcResult, compute
from app.calc.adapter_weights import WeightsHeader, header_of_json, header_of_text
from app.calc.dialects import parse_config_text
from app.calc.explain import Explanation, explain
from app.web.deps import CatalogueDep, TreesDep
from app.spec.limits import MAX_WEIGHTS_HEADER_BYTES, MAX_WEIGHTS_KEY_LENGTH, MAX_WEIGHTS_TENSORS
from app.web.errors import validation_detail

router = APIRouter(prefix="/api", tags=["calculator"])

CALC_EXAMPLE = {
    "model": "llama-3.1-8b",
    "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "use_dora": False},
    "training": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "max_seq_length": 1024,
                 "gradient_checkpointing": True, "base_dtype": "nf4", "optim": "adamw_8bit", "devices": 1},
}
ERROR_RESPONSES = {422: {"description": "A field is invalid: `detail` lists each field (`loc`) and the reason (`msg`)."}}


class ModelSummary(BaseModel):
    """A catalogue model."""

    id: str
    name: str
    hf_id: str | None
    licence: str
    size: str = Field(description="Parameter count, rounded.")
    model_type: str
    note: str = ""
    trainable: bool = Field(False, description="Whether POST /api/jobs can train it on this install.")
    source: str = Field("", description="Where the config.json was copied from (and what it was checked against).")


class ModelDetail(ModelSummary):
    """A catalogue model with its config.json."""

    config: dict[str, Any] = Field(description="The model's Hugging Face config.json, unchanged.")


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 422 in the same shape as FastAPI's request validation errors."""
    return JSONResponse({"detail": validation_detail(errors)}, status_code=422)


def _summary(model) -> dict[str, Any]:
    return dict(id=model.id, name=model.name, hf_id=model.hf_id, licence=model.licence, size=model.size,
                model_type=model.config["model_type"], note=model.note, trainable=model.trainable, source=model.source)


@router.post("/calc", response_model=CalcResult, responses=ERROR_RESPONSES)
def calculate(
    request: Annotated[CalcRequest, Body(openapi_examples={"qlora-llama": {"summary": "QLoRA on Llama-3.1-8B", "value": CALC_EXAMPLE}})],
    catalogue: CatalogueDep,
    trees: TreesDep,
):
    """Exact trainable parameters (equal to peft's), scaling per module, a memory estimate and lints.

    Give `model` (a catalogue id from GET /api/models) or `model_config` (a config.json), `lora` with
    LoraConfig fields as peft spells them, and optionally `training`.
    """
    try:
        return compute(request, catalogue, trees)
    except FieldError as error:
        return unprocessable([error.as_error(("body",))])


@router.get("/models", response_model=list[ModelSummary])
def list_models(catalogue: CatalogueDep):
    """The model catalogue: ids to use as `model` in POST /api/calc."""
    return [_summary(model) for model in catalogue.models]


@router.get("/models/{model_id}", response_model=ModelDetail, responses={404: {"description": "No such model."}})
def get_model(model_id: str, catalogue: CatalogueDep):
    """One catalogue model with its real config.json."""
    try:
        model = catalogue.get(model_id)
    except FieldError as error:
        raise HTTPException(404, error.message) from None
    return {**_summary(model), "config": model.config}


EXPLAIN_BODY = (
    'An adapter_config.json, or {"adapter_config": {...} or "<YAML text>", "model_config": {...}, '
    '"adapter_weights_header": {...} or "<JSON text>", "adapter_weights_bytes": N}; mlx-lm, Axolotl, LLaMA-Factory and '
    "torchtune configs are recognised and translated. adapter_weights_header is the JSON header of "
    "adapter_model.safetensors (the bytes after its first 8, which give the header's length): per module the rank and "
    "shapes saved, DoRA magnitudes, embedding adapters, modules_to_save copies and expert adapters, the differences from "
    "the config, and the exact file size against the calculator's when the base model is known. adapter_config may be "
    f"left out when the header is given. Limits: a header of at most {MAX_WEIGHTS_HEADER_BYTES:,} bytes, "
    f"{MAX_WEIGHTS_TENSORS:,} tensors and tensor names of {MAX_WEIGHTS_KEY_LENGTH} characters; adapter_weights_bytes "
    "(optional) is the file's size, against which the offsets are checked."
)


@router.post("/explain", response_model=Explanation, responses=ERROR_RESPONSES)
def explain_adapter(
    body: Annotated[dict[str, Any], Body(description=EXPLAIN_BODY)],
    catalogue: CatalogueDep,
    trees: TreesDep,
):
    """Every key of an adapter_config.json explained; exact counts when the base model is known; the weights' header read."""
    wrapped = "peft_type" not in body and (
        ("adapter_config" in body and isinstance(body["adapter_config"], (dict, str))) or "adapter_weights_header" in body)
    adapter_config = body.get("adapter_config") if wrapped else body
    if isinstance(adapter_config, str):  # another tool's YAML (or JSON) file, as text
        try:
            adapter_config = parse_config_text(adapter_config, ("body", "adapter_config"))
        except FieldError as error:
            return unprocessable([error.as_error()])
    model_config = body.get("model_config") if wrapped else None
    if model_config is not None and not isinstance(model_config, dict):
        return unprocessable([{"loc": ["body", "model_config"], "msg": "model_config must be a JSON object", "type": "dict_type"}])
    try:
        weights = _weights_header(body) if wrapped else None
        if adapter_config is None and weights is None:
            raise FieldError(("adapter_config",), "give an adapter_config, an adapter_weights_header, or both", "missing")
        return explain(adapter_config, model_config, catalogue, trees, weights=weights)
    except FieldError as error:
        return unprocessable([error.as_error(("body",))])
    except ValidationError as error:
        return unprocessable([{**detail, "loc": ["body", *detail["loc"]]} for detail in error.errors()])


def _weights_header(body: dict[str, Any]) -> WeightsHeader | None:
    """adapter_weights_header as an object or as the header's text, checked against adapter_weights_bytes when given."""
    value, size = body.get("adapter_weights_header"), body.get("adapter_weights_bytes")
    if value is None:
        return None
    if size is not None and (type(size) is not int or size < 0):
        raise FieldError(("adapter_weights_bytes",), "adapter_weights_bytes must be the file's size, a whole number of bytes",
                         "int_type")
    loc = ("adapter_weights_header",)
    if isinstance(value, str):
        return header_of_text(value, loc, file_bytes=size)
    return header_of_json(value, loc, file_bytes=size)
