"""Every key of a peft 0.21.2 adapter_config.json: default as peft writes it, meaning, page, whether calc models it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PEFT_VERSION = "0.21.2"


@dataclass(frozen=True)
class FieldInfo:
    """One adapter_config.json key."""

    default: Any
    meaning: str
    page: str | None = None  # encyclopedia slug, when the field has a page
    modelled: bool = False  # True when the calculator's count and scaling take it into account
    metadata: bool = False  # bookkeeping written by peft, not a training choice


F = FieldInfo
FIELDS: dict[str, FieldInfo] = {
    "alora_invocation_tokens": F(None, "Token ids that switch an activated LoRA (aLoRA) on."),
    "alpha_pattern": F({}, "Per-module lora_alpha, keyed by a regex matched against the end of the module name.", "alpha_pattern", True),
    "arrow_config": F(None, "Settings of Arrow routing between several LoRA experts."),
    "auto_mapping": F(None, "Which class to rebuild the base model with; set by peft for custom models.", metadata=True),
    "base_model_name_or_path": F(None, "The model the adapter was trained on.", metadata=True),
    "bias": F("none", 'Which biases train: "none", "all" (every bias in the model) or "lora_only" (biases of adapted layers).', "bias", True),
    "corda_config": F(None, "Settings of CorDA, a data-driven initialisation."),
    "ensure_weight_tying": F(False, "Keep tied input and output embeddings tied when both are adapted or saved."),
    "eva_config": F(None, "Settings of EVA, a data-driven initialisation that can move rank between layers."),
    "exclude_modules": F(None, "Modules never adapted: names or suffixes, or a full-match regex.", "exclude_modules", True),
    "fan_in_fan_out": F(False, "True when the layer stores its weight as (in, out), as GPT-2's Conv1D does.", "fan_in_fan_out", True),
    "inference_mode": F(False, "True when the adapter was saved for inference; peft then freezes it on load.", metadata=True),
    "init_lora_weights": F(True, "How A and B start: true (B = 0, so no change at first), false, gaussian, pissa, olora, loftq, eva, ...", "init_lora_weights", True),
    "kasa_config": F(None, "Settings of KaSA, a variant that truncates the base weight's spectrum."),
    "layer_replication": F(None, "Stack copies of base layers to deepen the model before adapting it."),
    "layers_pattern": F(None, "The name of the layer list (layers, h, ...) used with layers_to_transform.", "layers_pattern", True),
    "layers_to_transform": F(None, "Indices of the decoder layers to adapt; others stay untouched.", "layers_to_transform", True),
    "loftq_config": F({}, "LoftQ settings (bits, iterations), used only when init_lora_weights is loftq.", "loftq_config", True),
    "lora_alpha": F(8, "Numerator of the scaling: the update is multiplied by lora_alpha / r.", "lora_alpha", True),
    "lora_bias": F(False, "Give lora_B a bias vector of its own.", "lora_bias", True),
    "lora_dropout": F(0.0, "Dropout probability on the input of the LoRA branch during training.", "lora_dropout", True),
    "lora_ga_config": F(None, "Settings of LoRA-GA, an initialisation from gradients."),
    "megatron_config": F(None, "Megatron-LM parallel layer settings."),
    "megatron_core": F("megatron.core", "The Megatron module to import when megatron_config is set."),
    "modules_to_save": F(None, "Modules trained in full and saved with the adapter (heads, embeddings).", "modules_to_save", True),
    "monteclora_config": F(None, "Settings of MonteCLoRA, a Monte Carlo variant of LoRA."),
    "peft_type": F("LORA", "The adapter method; this page explains LORA adapters.", metadata=True),
    "peft_version": F(PEFT_VERSION, "The peft version that saved the adapter.", metadata=True),
    "qalora_group_size": F(16, "Group size of QA-LoRA's input pooling (used with use_qalora)."),
    "r": F(8, "Rank of the update: each adapted weight W gets W + B A with A of shape r x in and B of shape out x r.", "r", True),
    "rank_pattern": F({}, "Per-module r, keyed by a regex matched against the end of the module name.", "rank_pattern", True),
    "revision": F(None, "The base model revision (git tag or commit) the adapter was trained on.", metadata=True),
    "target_modules": F(None, 'Modules to adapt: names or suffixes, a full-match regex, or "all-linear"; null picks peft\'s default for the model.', "target_modules", True),
    "target_parameters": F(None, "nn.Parameter names to adapt directly, such as fused mixture-of-experts weights.", "target_parameters", True),
    "task_type": F(None, "The kind of model head peft wraps, e.g. CAUSAL_LM.", "task_type", True),
    "trainable_token_indices": F(None, "Token ids whose embedding rows train, without training the whole embedding."),
    "use_bdlora": F(None, "Settings of block-diagonal LoRA for multi-adapter serving."),
    "use_dora": F(False, "DoRA: split the weight into magnitude and direction and adapt both.", "use_dora", True),
    "use_qalora": F(False, "QA-LoRA: quantisation-aware LoRA for GPTQ models."),
    "use_rslora": F(False, "rsLoRA: scale by lora_alpha / sqrt(r) instead of lora_alpha / r.", "use_rslora", True),
    "velora_config": F(None, "Settings of VeLoRA, which compresses activations saved for the backward pass."),
}

# Keys peft no longer writes: listed, not fatal.
LEGACY_FIELDS: dict[str, str] = {
    "enable_lora": "peft 0.2 and earlier: which of a fused qkv layer's parts to adapt (MergedLinear).",
    "merge_weights": "peft 0.2 and earlier: merge the adapter into the weights in eval mode.",
    "runtime_config": "Runtime-only settings; newer peft no longer saves them.",
}


def adapter_config_defaults() -> dict[str, Any]:
    """adapter_config.json as peft 0.21.2 writes it for LoraConfig() with every default."""
    return {name: info.default for name, info in sorted(FIELDS.items())}
