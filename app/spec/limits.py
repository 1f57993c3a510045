"""Size limits of every LoRA input that peft matches against module names (far above any real config), and their check."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StrictInt
from pydantic_core import PydanticCustomError

# Names of modules and parameters: the longest in the catalogue is under 80 characters.
MAX_NAME_LENGTH = 256
# target_modules / exclude_modules / target_parameters lists: all-linear on the 70B model names 7 leaves;
# an explicit list of every full module name of the largest catalogue model is about 1,100.
MAX_NAMES = 2_048
# A regex (target_modules or exclude_modules as a string, a rank_pattern/alpha_pattern key, a modules_to_save
# entry, a layers_pattern): long enough for an alternation of every leaf name of a model.
MAX_PATTERN_LENGTH = 1_024
# rank_pattern / alpha_pattern keys: EVA and AdaLoRA write one key per adapted module (about 1,100 on 70B).
MAX_PATTERN_KEYS = 2_048
# Of those keys, how many may be regexes rather than plain names: each regex is compiled to validate it and
# tried against every module name, so this bounds the validation and matching time (no config has hundreds).
MAX_REGEX_PATTERN_KEYS = 256
MAX_MODULES_TO_SAVE = 64
MAX_LAYERS_TO_TRANSFORM = 1_024
MAX_LAYER_INDEX = 65_535
MAX_LAYERS_PATTERN = 16

# adapter_model.safetensors headers (/explain reads only the header). A 70B all-linear DoRA adapter with bias="all"
# has about 2,000 tensors and a 300 kB header; a transformers-4 MoE with every expert's projections adapted (256
# experts x 61 layers) reaches about 90,000 tensors and 14 MB: refused, like anything else past half the body limit.
MAX_WEIGHTS_HEADER_BYTES = 4_000_000
MAX_WEIGHTS_TENSORS = 32_768
# peft's key: base_model.model. + a module name (at most MAX_NAME_LENGTH) + nested .base_layer parts + .lora_A.weight
MAX_WEIGHTS_KEY_LENGTH = 512
MAX_WEIGHTS_METADATA_KEYS = 256
MAX_TENSOR_DIMS = 8  # LoRA tensors have 1 to 5 dimensions (3-D convolutions); 8 leaves room
MAX_TENSOR_DIM = 2**48  # one dimension; real ones are below 2**20

# Time one request may spend computing (calculator, explain, dataset validation) before it is stopped.
WORK_SECONDS = 5.0
# A pattern outside what RE2 can run (lookaround, backreference) is matched with a backtracking engine,
# stopped after this long on one name.
BACKTRACKING_MATCH_SECONDS = 0.05

# The same limits as schema constraints (maxItems / maxLength / maxProperties in the OpenAPI schema).
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Pattern = Annotated[str, Field(max_length=MAX_PATTERN_LENGTH)]
NameList = Annotated[list[Name], Field(max_length=MAX_NAMES)]
Names = NameList | Pattern | None
PatternDict = Annotated[dict[Pattern, Any], Field(max_length=MAX_PATTERN_KEYS)]
LayerIndex = Annotated[StrictInt, Field(le=MAX_LAYER_INDEX)]
LayerIndices = Annotated[list[LayerIndex], Field(max_length=MAX_LAYERS_TO_TRANSFORM)] | LayerIndex | None
LayerPatterns = Annotated[list[Pattern], Field(max_length=MAX_LAYERS_PATTERN)] | Pattern | None
ModulesToSave = Annotated[list[Pattern], Field(max_length=MAX_MODULES_TO_SAVE)] | None

# field -> (most entries, longest entry); a str value counts as one entry
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "target_modules": (MAX_NAMES, MAX_NAME_LENGTH),
    "exclude_modules": (MAX_NAMES, MAX_NAME_LENGTH),
    "target_parameters": (MAX_NAMES, MAX_NAME_LENGTH),
    "modules_to_save": (MAX_MODULES_TO_SAVE, MAX_PATTERN_LENGTH),
    "layers_to_transform": (MAX_LAYERS_TO_TRANSFORM, 0),
    "layers_pattern": (MAX_LAYERS_PATTERN, MAX_PATTERN_LENGTH),
    "rank_pattern": (MAX_PATTERN_KEYS, MAX_PATTERN_LENGTH),
    "alpha_pattern": (MAX_PATTERN_KEYS, MAX_PATTERN_LENGTH),
}


_PLAIN_NAME = re.compile(r"[\w.\-]*", re.ASCII)


def is_plain_name(pattern: str) -> bool:
    """True for names like model.layers.0.q_proj: a valid regex without compiling it (`.` aside, no metacharacter)."""
    return _PLAIN_NAME.fullmatch(pattern) is not None


def check_size(value: Any, field: str) -> Any:
    """Refuse a list, dict or name over its limit, before anything iterates over it (a before-validator)."""
    most, longest = SIZE_LIMITS[field]
    if isinstance(value, str):
        limit = MAX_PATTERN_LENGTH if field in ("target_modules", "exclude_modules") else longest
        if len(value) > limit:
            raise PydanticCustomError("size_limit", f"{field} is {len(value):,} characters long; at most {limit:,} are accepted")
        return value
    if field == "layers_to_transform":
        for index in value if isinstance(value, list) else [value]:
            if isinstance(index, int) and index > MAX_LAYER_INDEX:
                raise PydanticCustomError("layer_index_limit", f"layer index {index:,} is above {MAX_LAYER_INDEX:,}, the most accepted")
    if isinstance(value, (list, dict)):
        what = "keys" if isinstance(value, dict) else "entries"
        if len(value) > most:
            raise PydanticCustomError("size_limit", f"{field} has {len(value):,} {what}; at most {most:,} are accepted")
        if field in ("rank_pattern", "alpha_pattern"):
            regexes = sum(1 for key in value if isinstance(key, str) and not is_plain_name(key))
            if regexes > MAX_REGEX_PATTERN_KEYS:
                raise PydanticCustomError(
                    "size_limit", f"{field} has {regexes:,} regex keys; at most {MAX_REGEX_PATTERN_KEYS:,} are accepted "
                    "(keys that are plain module names do not count)",
                )
        for entry in value:
            if longest and isinstance(entry, str) and len(entry) > longest:
                raise PydanticCustomError(
                    "size_limit", f"{field} has an entry of {len(entry):,} characters; at most {longest:,} are accepted"
                )
    return value
