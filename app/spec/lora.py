"""The LoraConfig fields Lorapedia models, as peft 0.21 spells and defaults them; the keys it does not model beside them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.spec.base import SpecModel, spec_field
from app.spec.errors import conflict, describe
from app.spec.limits import SIZE_LIMITS, LayerIndices, LayerPatterns, ModulesToSave, NameList, Names, PatternDict, check_size, is_plain_name
from app.spec.numbers import finite_number

PEFT_VERSION = "0.21.2"
MAX_RANK = 65_536  # above every hidden or intermediate size of the catalogue; beyond it r is not "low rank"
INIT_CHOICES = ("gaussian", "eva", "olora", "pissa", "corda", "loftq", "orthogonal", "mica", "lora_ga")
TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
_PISSA_NITER = re.compile(r"^pissa_niter_\d+$")


def _finite(value: Any, info: ValidationInfo) -> Any:
    """Refuse non-numbers, NaN, infinities and ints beyond a float before the union and the bounds see them."""
    return finite_number(value, info.field_name or "value")


Number = Annotated[StrictInt | StrictFloat, BeforeValidator(_finite)]


def _compiles(pattern: str, what: str) -> None:
    """peft matches these with re: a pattern that does not compile is reported on its field."""
    if is_plain_name(pattern):
        return  # valid, and cheap to know: EVA-style configs carry one plain key per module
    try:
        re.compile(pattern)
    except re.error as error:
        raise PydanticCustomError("regex", f"{what} is not a valid regular expression: {error}") from None


def _names(value: Any, field: str) -> Any:
    """A list of module names must hold non-empty strings; a str must be a valid regex."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise PydanticCustomError("empty", f"{field} is an empty string; leave it out or give names")
        _compiles(value, f"{field} {value!r}")
        return value
    for name in value:
        if not name.strip():
            raise PydanticCustomError("empty", f"{field} contains an empty name")
    return value


def _pattern_rank(value: Any, what: str) -> Any:
    """A rank_pattern value: a whole number in r's own range (read from the r field)."""
    bounds = LoraSpec.model_fields["r"].metadata
    low, high = (next(getattr(item, name) for item in bounds if getattr(item, name, None) is not None) for name in ("ge", "le"))
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("rank_type", f"{what} must be a whole number, got {describe(value)}")
    if not low <= value <= high:
        raise PydanticCustomError("rank_range", f"{what} must be from {low} to {high:,}, got {describe(value)}")
    return value


class LoftQSpec(BaseModel):
    """peft's LoftQConfig."""

    model_config = ConfigDict(extra="forbid")

    loftq_bits: StrictInt = Field(4, ge=1, le=8)
    loftq_iter: StrictInt = Field(1, ge=1, le=100)


class LoraSpec(SpecModel):
    """LoraConfig fields as peft spells them, with peft 0.21's defaults; invalid combinations fail on the field."""

    r: StrictInt = spec_field(
        8, ge=1, le=MAX_RANK, page="r", label="r (rank)", placeholder="8",
        help="Rank of the update: each adapted weight W gets W + B A with A of shape r x in and B of shape out x r.")
    target_modules: Names = spec_field(
        None, page="target_modules", placeholder="q_proj, v_proj  or  all-linear  or a regex",
        help='Modules to adapt: names or suffixes, a full-match regex, or "all-linear"; empty picks peft\'s default for the model.')
    exclude_modules: Names = spec_field(
        None, page="exclude_modules", placeholder="names or a regex", advanced=True,
        help="Modules never adapted: names or suffixes, or a full-match regex.")
    lora_alpha: Number = spec_field(
        8, gt=0, page="lora_alpha", placeholder="8",
        help="Numerator of the scaling: the update is multiplied by lora_alpha / r.")
    lora_dropout: Number = spec_field(
        0.0, ge=0, lt=1, page="lora_dropout", placeholder="0.0",
        help="Dropout probability on the input of the LoRA branch during training.")
    fan_in_fan_out: StrictBool = spec_field(
        False, page="fan_in_fan_out", advanced=True,
        help="True when the layer stores its weight as (in, out), as GPT-2's Conv1D does.")
    bias: Literal["none", "all", "lora_only"] = spec_field(
        "none", page="bias",
        help='Which biases train: "none", "all" (every bias in the model) or "lora_only" (biases of adapted layers).')
    use_rslora: StrictBool = spec_field(
        False, page="use_rslora", help="rsLoRA: scale by lora_alpha / sqrt(r) instead of lora_alpha / r.")
    modules_to_save: ModulesToSave = spec_field(
        None, page="modules_to_save", placeholder="lm_head, embed_tokens", advanced=True,
        help="Modules trained in full and saved with the adapter (heads, embeddings).")
    init_lora_weights: StrictBool | str = spec_field(
        True, page="init_lora_weights", kind="choice", choices=(True, False, *INIT_CHOICES),
        help="How A and B start: true (B = 0, so no change at first), false, gaussian, pissa, pissa_niter_<n>, olora, loftq, eva, ...")
    layers_to_transform: LayerIndices = spec_field(
        None, page="layers_to_transform", placeholder="0, 1, 2", advanced=True,
        help="Indices of the decoder layers to adapt; others stay untouched.")
    layers_pattern: LayerPatterns = spec_field(
        None, page="layers_pattern", placeholder="layers", kind="list", advanced=True,
        help="The name of the layer list (layers, h, ...) used with layers_to_transform.")
    rank_pattern: PatternDict = spec_field(
        dict, page="rank_pattern", placeholder="q_proj=16, down_proj=4", advanced=True,
        help="Per-module r, keyed by a regex matched against the end of the module name.")
    alpha_pattern: PatternDict = spec_field(
        dict, page="alpha_pattern", placeholder="q_proj=32", advanced=True,
        help="Per-module lora_alpha, keyed by a regex matched against the end of the module name.")
    loftq_config: dict[str, Any] = spec_field(
        dict, page="loftq_config", placeholder="loftq_bits=4, loftq_iter=1", advanced=True,
        help="LoftQ settings (bits, iterations), used only when init_lora_weights is loftq.")
    use_dora: StrictBool = spec_field(
        False, page="use_dora", help="DoRA: split the weight into magnitude and direction and adapt both.")
    lora_bias: StrictBool = spec_field(False, page="lora_bias", help="Give lora_B a bias vector of its own.")
    target_parameters: NameList | None = spec_field(
        None, page="target_parameters", placeholder="experts.gate_up_proj", advanced=True,
        help="nn.Parameter names to adapt directly, such as fused mixture-of-experts weights.")
    task_type: Literal[TASK_TYPES] | None = spec_field(  # type: ignore[valid-type]
        None, page="task_type", advanced=True, help="The kind of model head peft wraps, e.g. CAUSAL_LM.")

    @field_validator(*SIZE_LIMITS, mode="before")
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and (info.context or {}).get("text"):
            return value  # form text: parsed first, then held to the same limits by the field's type
        return check_size(value, info.field_name)

    @field_validator("target_modules", "exclude_modules")
    @classmethod
    def _module_names(cls, value: Any, info: ValidationInfo) -> Any:
        return _names(value, info.field_name)

    @field_validator("modules_to_save", "target_parameters")
    @classmethod
    def _plain_names(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None:
            _names(value, info.field_name)
            if info.field_name == "modules_to_save":
                for name in value:
                    _compiles(name, f"modules_to_save entry {name!r}")
        return value

    @field_validator("loftq_config")
    @classmethod
    def _loftq(cls, value: dict[str, Any]) -> dict[str, Any]:
        return LoftQSpec.model_validate(value).model_dump() if value else value

    @field_validator("init_lora_weights")
    @classmethod
    def _init(cls, value: bool | str) -> bool | str:
        if isinstance(value, bool) or value in INIT_CHOICES or _PISSA_NITER.match(value):
            return value
        raise PydanticCustomError(
            "init_choice",
            f"init_lora_weights {describe(value)} is not one of true, false, {', '.join(INIT_CHOICES)}, pissa_niter_<n>",
        )

    @field_validator("layers_to_transform")
    @classmethod
    def _layers(cls, value: list[int] | int | None) -> list[int] | int | None:
        for index in [value] if isinstance(value, int) else value or []:
            if index < 0:
                raise PydanticCustomError("layer_index", f"layer indices start at 0, got {index}")
        return value

    @field_validator("rank_pattern", "alpha_pattern")
    @classmethod
    def _patterns(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for key, item in value.items():
            if not key:
                raise PydanticCustomError("empty", f"{info.field_name} has an empty key")
            _compiles(key, f"{info.field_name} key {key!r}")
            what = f"{info.field_name}[{key!r}]"
            if info.field_name == "rank_pattern":
                _pattern_rank(item, what)
            elif finite_number(item, what, "a finite number above 0") <= 0:
                raise PydanticCustomError("alpha_range", f"{what} must be a finite number above 0, got {item}")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> "LoraSpec":
        """What peft's LoraConfig.__post_init__ and layer set-up reject, reported on the field to change."""
        regex_target = isinstance(self.target_modules, str)
        if regex_target and self.layers_to_transform is not None:
            raise conflict(
                "layers_to_transform",
                "layers_to_transform cannot be used when target_modules is a string (a regex or all-linear); "
                "list the module names instead",
                self.layers_to_transform,
            )
        if regex_target and self.layers_pattern is not None:
            raise conflict("layers_pattern", "layers_pattern cannot be used when target_modules is a string", self.layers_pattern)
        if self.layers_pattern and self.layers_to_transform is None:
            raise conflict("layers_pattern", "layers_pattern needs layers_to_transform", self.layers_pattern)
        if self.lora_bias and self.use_dora:
            raise conflict("lora_bias", "lora_bias=True is not supported with DoRA (use_dora=True)", self.lora_bias)
        if self.lora_bias and not isinstance(self.init_lora_weights, bool):
            raise conflict(
                "lora_bias",
                f"lora_bias=True works only with init_lora_weights true or false, not {self.init_lora_weights!r}",
                self.lora_bias,
            )
        if self.use_dora and self.init_lora_weights == "mica":
            raise conflict("use_dora", 'DoRA cannot be combined with init_lora_weights="mica" (peft refuses the pair)', self.use_dora)
        if self.init_lora_weights == "loftq" and not self.loftq_config:
            raise conflict("loftq_config", 'init_lora_weights="loftq" needs a loftq_config', self.loftq_config)
        if self.init_lora_weights == "orthogonal":
            odd = [rank for rank in (self.r, *self.rank_pattern.values()) if rank % 2]
            if odd:
                raise conflict("r", f"orthogonal initialisation needs an even rank, got {odd[0]}", self.r)
        return self

    def to_peft_kwargs(self, *, include_defaults: bool = False) -> dict[str, Any]:
        """Keyword arguments for peft's LoraConfig (only non-default ones unless asked)."""
        return self.model_dump(mode="json", exclude_defaults=not include_defaults)


class PeftKey(BaseModel):
    """An adapter_config.json key that LoraSpec does not model: its default as peft writes it, and what it means."""

    model_config = ConfigDict(frozen=True)

    default: Any
    meaning: str
    metadata: bool = False  # bookkeeping written by peft, not a training choice
    page: str | None = None  # encyclopedia slug, when it has a page


_K = PeftKey
# Every other key of a peft 0.21.2 adapter_config.json. A test holds these and LoraSpec's defaults to installed peft.
UNMODELLED_KEYS: dict[str, PeftKey] = {
    "alora_invocation_tokens": _K(default=None, meaning="Token ids that switch an activated LoRA (aLoRA) on."),
    "arrow_config": _K(default=None, meaning="Settings of Arrow routing between several LoRA experts."),
    "auto_mapping": _K(default=None, meaning="Which class to rebuild the base model with; set by peft for custom models.", metadata=True),
    "base_model_name_or_path": _K(default=None, meaning="The model the adapter was trained on.", metadata=True),
    "corda_config": _K(default=None, meaning="Settings of CorDA, a data-driven initialisation."),
    "ensure_weight_tying": _K(default=False, meaning="Keep tied input and output embeddings tied when both are adapted or saved."),
    "eva_config": _K(default=None, meaning="Settings of EVA, a data-driven initialisation that can move rank between layers."),
    "inference_mode": _K(default=False, meaning="True when the adapter was saved for inference; peft then freezes it on load.", metadata=True),
    "kasa_config": _K(default=None, meaning="Settings of KaSA, a variant that truncates the base weight's spectrum."),
    "layer_replication": _K(default=None, meaning="Stack copies of base layers to deepen the model before adapting it.", page="layer_replication"),
    "lora_ga_config": _K(default=None, meaning="Settings of LoRA-GA, an initialisation from gradients."),
    "megatron_config": _K(default=None, meaning="Megatron-LM parallel layer settings."),
    "megatron_core": _K(default="megatron.core", meaning="The Megatron module to import when megatron_config is set."),
    "monteclora_config": _K(default=None, meaning="Settings of MonteCLoRA, a Monte Carlo variant of LoRA."),
    "peft_type": _K(default="LORA", meaning="The adapter method; this page explains LORA adapters.", metadata=True),
    "peft_version": _K(default=PEFT_VERSION, meaning="The peft version that saved the adapter.", metadata=True),
    "qalora_group_size": _K(default=16, meaning="Group size of QA-LoRA's input pooling (used with use_qalora).", page="qalora_group_size"),
    "revision": _K(default=None, meaning="The base model revision (git tag or commit) the adapter was trained on.", metadata=True),
    "trainable_token_indices": _K(default=None, meaning="Token ids whose embedding rows train, without training the whole embedding.", page="trainable_token_indices"),
    "use_bdlora": _K(default=None, meaning="Settings of block-diagonal LoRA for multi-adapter serving."),
    "use_qalora": _K(default=False, meaning="QA-LoRA: quantisation-aware LoRA for GPTQ models.", page="use_qalora"),
    "velora_config": _K(default=None, meaning="Settings of VeLoRA, which compresses activations saved for the backward pass."),
}

# Keys peft no longer writes: listed, not fatal.
LEGACY_KEYS: dict[str, str] = {
    "enable_lora": "peft 0.2 and earlier: which of a fused qkv layer's parts to adapt (MergedLinear).",
    "merge_weights": "peft 0.2 and earlier: merge the adapter into the weights in eval mode.",
    "runtime_config": "Runtime-only settings; newer peft no longer saves them.",
}


def adapter_config_defaults() -> dict[str, Any]:
    """adapter_config.json as peft 0.21.2 writes it for LoraConfig() with every default."""
    modelled = LoraSpec().model_dump(mode="json")
    return dict(sorted({**modelled, **{name: key.default for name, key in UNMODELLED_KEYS.items()}}.items()))
