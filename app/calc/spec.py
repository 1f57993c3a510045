"""LoraSpec: the LoraConfig fields Lorapedia models, with peft's names and defaults, validated in one place."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.calc.errors import describe
from app.calc.limits import LayerIndices, LayerPatterns, ModulesToSave, NameList, Names, PatternDict, SIZE_LIMITS, check_size, is_plain_name
from app.calc.numbers import finite_number

MAX_RANK = 65_536  # above every hidden or intermediate size of the catalogue; beyond it r is not "low rank"
INIT_CHOICES = ("gaussian", "eva", "olora", "pissa", "corda", "loftq", "orthogonal", "mica", "lora_ga")
TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
_PISSA_NITER = re.compile(r"^pissa_niter_\d+$")

Number = StrictInt | StrictFloat


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


def _compiles(pattern: str, what: str) -> None:
    """peft matches these with re: a pattern that does not compile is reported on its field."""
    if is_plain_name(pattern):
        return  # valid, and cheap to know: EVA-style configs carry one plain key per module
    try:
        re.compile(pattern)
    except re.error as error:
        raise PydanticCustomError("regex", f"{what} is not a valid regular expression: {error}") from None


def _regex_keys(value: dict[str, Any], field: str) -> dict[str, Any]:
    for key in value:
        if not key:
            raise PydanticCustomError("empty", f"{field} has an empty key")
        _compiles(key, f"{field} key {key!r}")
    return value


def _checked_rank(value: Any, what: str) -> Any:
    """A rank is a whole number from 1 to MAX_RANK; strings and floats are refused, never coerced."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a string " if isinstance(value, str) else ""
        raise PydanticCustomError("int_type", f"{what} must be a whole number, got {kind}{describe(value)}")
    if value < 1:
        raise PydanticCustomError("greater_than_equal", f"{what} must be at least 1 (peft rejects r <= 0), got {describe(value)}")
    if value > MAX_RANK:
        raise PydanticCustomError(
            "less_than_equal", f"{what} of {describe(value)} is far above any layer width; the most accepted is {MAX_RANK}"
        )
    return value


def _positive_alpha(value: Any, what: str) -> Any:
    """lora_alpha and alpha_pattern values: a finite number above 0."""
    rule = "a finite number above 0"
    if finite_number(value, what, rule) <= 0:
        raise PydanticCustomError("greater_than", f"{what} must be {rule}, got {value}")
    return value


def _conflict(field: str, message: str, value: Any) -> ValidationError:
    """A cross-field error reported on `field`, so forms show it next to the right input."""
    detail = InitErrorDetails(type=PydanticCustomError("conflict", message), loc=(field,), input=value)
    return ValidationError.from_exception_data("LoraSpec", [detail])


class LoftQSpec(BaseModel):
    """peft's LoftQConfig."""

    model_config = ConfigDict(extra="forbid")

    loftq_bits: StrictInt = Field(4, ge=1, le=8)
    loftq_iter: StrictInt = Field(1, ge=1, le=100)


class LoraSpec(BaseModel):
    """LoraConfig fields as peft spells them, with peft 0.21's defaults; invalid combinations fail on the field."""

    model_config = ConfigDict(extra="forbid")

    r: StrictInt = Field(8, ge=1, le=MAX_RANK, description="Rank of the update matrices.")
    target_modules: Names = Field(
        None, description='Module names or suffixes, a full-match regex, or "all-linear"; null = peft default.'
    )
    exclude_modules: Names = Field(None, description="Names or suffixes (or a regex) never to adapt.")
    lora_alpha: Number = Field(8, description="Numerator of the scaling alpha/r.")
    lora_dropout: Number = Field(0.0, description="Dropout on the input of the LoRA branch.")
    fan_in_fan_out: StrictBool = Field(False, description="True for layers storing weights as (in, out), as GPT-2's Conv1D.")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")
    use_rslora: StrictBool = Field(False, description="Scale by alpha/sqrt(r) instead of alpha/r.")
    modules_to_save: ModulesToSave = Field(None, description="Modules trained fully and saved with the adapter.")
    init_lora_weights: StrictBool | str = Field(True, description="How A and B start.")
    layers_to_transform: LayerIndices = Field(None, description="Layer indices to adapt.")
    layers_pattern: LayerPatterns = Field(None, description="Name of the layer list, e.g. layers or h.")
    rank_pattern: PatternDict = Field(default_factory=dict, description="Per-module r, keyed by regex.")
    alpha_pattern: PatternDict = Field(default_factory=dict, description="Per-module alpha, keyed by regex.")
    loftq_config: dict[str, Any] = Field(default_factory=dict, description="LoftQ settings: loftq_bits, loftq_iter.")
    use_dora: StrictBool = Field(False, description="Weight-decomposed LoRA: adds a magnitude vector.")
    lora_bias: StrictBool = Field(False, description="Give lora_B a bias.")
    target_parameters: NameList | None = Field(None, description="nn.Parameter names to adapt (MoE experts).")
    task_type: Literal[TASK_TYPES] | None = Field(None, description="The model head peft wraps.")  # type: ignore[valid-type]

    @field_validator(*SIZE_LIMITS, mode="before")
    @classmethod
    def _bounded(cls, value: Any, info: Any) -> Any:
        return check_size(value, info.field_name)

    @field_validator("r", mode="before")
    @classmethod
    def _rank(cls, value: Any) -> Any:
        return _checked_rank(value, "r")

    @field_validator("target_modules", "exclude_modules")
    @classmethod
    def _module_names(cls, value: Any, info: Any) -> Any:
        return _names(value, info.field_name)

    @field_validator("modules_to_save", "target_parameters")
    @classmethod
    def _plain_names(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value is not None:
            _names(value, info.field_name)
            if info.field_name == "modules_to_save":
                for name in value:
                    _compiles(name, f"modules_to_save entry {name!r}")
        return value

    @field_validator("lora_alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        return _positive_alpha(value, "lora_alpha")

    @field_validator("lora_dropout")
    @classmethod
    def _dropout(cls, value: float) -> float:
        rule = "a probability: at least 0 and below 1"
        if not 0 <= finite_number(value, "lora_dropout", rule) < 1:
            raise PydanticCustomError("dropout_range", f"lora_dropout is {rule}, got {value}")
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
            f"init_lora_weights {value!r} is not one of true, false, {', '.join(INIT_CHOICES)}, pissa_niter_<n>",
        )

    @field_validator("layers_to_transform")
    @classmethod
    def _layers(cls, value: list[int] | int | None) -> list[int] | int | None:
        indices = [value] if isinstance(value, int) else value or []
        for index in indices:
            if index < 0:
                raise PydanticCustomError("greater_than_equal", f"layer indices start at 0, got {index}")
        return value

    @field_validator("rank_pattern")
    @classmethod
    def _ranks(cls, value: dict[str, int]) -> dict[str, int]:
        for key, rank in _regex_keys(value, "rank_pattern").items():
            _checked_rank(rank, f"rank_pattern[{key!r}]")
        return value

    @field_validator("alpha_pattern")
    @classmethod
    def _alphas(cls, value: dict[str, float]) -> dict[str, float]:
        for key, alpha in _regex_keys(value, "alpha_pattern").items():
            _positive_alpha(alpha, f"alpha_pattern[{key!r}]")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> "LoraSpec":
        """What peft's LoraConfig.__post_init__ and layer set-up reject, reported on the field to change."""
        regex_target = isinstance(self.target_modules, str)
        if regex_target and self.layers_to_transform is not None:
            raise _conflict(
                "layers_to_transform",
                "layers_to_transform cannot be used when target_modules is a string (a regex or all-linear); "
                "list the module names instead",
                self.layers_to_transform,
            )
        if regex_target and self.layers_pattern is not None:
            raise _conflict("layers_pattern", "layers_pattern cannot be used when target_modules is a string", self.layers_pattern)
        if self.layers_pattern and self.layers_to_transform is None:
            raise _conflict("layers_pattern", "layers_pattern needs layers_to_transform", self.layers_pattern)
        if self.lora_bias and self.use_dora:
            raise _conflict("lora_bias", "lora_bias=True is not supported with DoRA (use_dora=True)", self.lora_bias)
        if self.lora_bias and not isinstance(self.init_lora_weights, bool):
            raise _conflict(
                "lora_bias",
                f"lora_bias=True works only with init_lora_weights true or false, not {self.init_lora_weights!r}",
                self.lora_bias,
            )
        if self.use_dora and self.init_lora_weights == "mica":
            raise _conflict("use_dora", 'DoRA cannot be combined with init_lora_weights="mica" (peft refuses the pair)', self.use_dora)
        if self.init_lora_weights == "loftq" and not self.loftq_config:
            raise _conflict("loftq_config", 'init_lora_weights="loftq" needs a loftq_config', self.loftq_config)
        if self.init_lora_weights == "orthogonal":
            odd = [rank for rank in (self.r, *self.rank_pattern.values()) if rank % 2]
            if odd:
                raise _conflict(
                    "r", f"orthogonal initialisation needs an even rank, got {odd[0]}", self.r
                )
        return self

    def to_peft_kwargs(self, *, include_defaults: bool = False) -> dict[str, Any]:
        """Keyword arguments for peft's LoraConfig (only non-default ones unless asked)."""
        return self.model_dump(mode="json", exclude_defaults=not include_defaults)
