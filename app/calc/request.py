"""CalcRequest: a catalogue model id or a pasted config.json, a LoraSpec and a TrainingSpec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.calc.spec import LoraSpec, _conflict
from app.calc.training_spec import TrainingSpec


class CalcRequest(BaseModel):
    """The input of `compute`: give exactly one of `model` (catalogue id) or `model_config` (config.json)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = Field(None, description="A catalogue model id, e.g. llama-3.1-8b (GET /api/models).")
    hf_config: dict[str, Any] | None = Field(
        None, alias="model_config", description="The contents of a Hugging Face config.json, instead of `model`."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoraConfig fields, as peft spells them.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Batch, sequence, precision, optimizer.")

    @model_validator(mode="after")
    def _one_model(self) -> "CalcRequest":
        if (self.model is None) == (self.hf_config is None):
            raise _conflict("model", 'give exactly one of "model" (a catalogue id) or "model_config" (config.json)', self.model)
        return self
