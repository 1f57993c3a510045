"""CalcRequest: a catalogue model id or a pasted config.json, a LoraSpec and a CalcTrainingSpec; and its URL form."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.spec.base import as_text
from app.spec.errors import conflict
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

CUSTOM_MODEL = "custom"  # the `model` value that means "read model_config instead"
DEFAULT_MODEL = "smollm2-135m-instruct"


class CalcRequest(BaseModel):
    """The input of `compute`: give exactly one of `model` (catalogue id) or `model_config` (config.json)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = Field(None, description="A catalogue model id, e.g. llama-3.1-8b (GET /api/models).")
    hf_config: dict[str, Any] | None = Field(
        None, alias="model_config", description="The contents of a Hugging Face config.json, instead of `model`."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoraConfig fields, as peft spells them.")
    training: CalcTrainingSpec = Field(default_factory=CalcTrainingSpec, description="TrainingArguments fields and the hardware.")

    @model_validator(mode="after")
    def _one_model(self) -> "CalcRequest":
        if (self.model is None) == (self.hf_config is None):
            raise conflict("model", 'give exactly one of "model" (a catalogue id) or "model_config" (config.json)', self.model, "CalcRequest")
        return self


def calculator_query(lora: LoraSpec, training: CalcTrainingSpec | None = None, model: str | None = None,
                     model_config: dict[str, Any] | None = None) -> dict[str, str]:
    """Query parameters that reproduce a configuration on /calculator (defaults left out)."""
    query: dict[str, str] = {}
    if model_config is not None:
        query = {"model": CUSTOM_MODEL, "model_config": json.dumps(model_config, separators=(",", ":"))}
    elif model is not None:
        query = {"model": model}
    return query | as_text(lora) | (as_text(training) if training is not None else {})
