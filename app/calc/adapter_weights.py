"""What an adapter_model.safetensors holds, read from its header alone: per module the rank and shapes saved, and the totals.

A safetensors file is an 8-byte little-endian header length, a JSON header (`__metadata__`, then per tensor its
dtype, shape and [start, end) byte offsets into the data) and the data. peft 0.21 keys a LoRA layer as
base_model.model.<module>.lora_A.weight / lora_B.weight (lora_B.bias with lora_bias), DoRA adds
<module>.lora_magnitude_vector, an embedding gets lora_embedding_A / lora_embedding_B, a parameter adapter
(target_parameters) nests one `.base_layer` per later wrapped parameter, and modules_to_save copies are saved
under their plain names. mlx-lm saves <module>.lora_a (in, r) and lora_b (r, out), transposed from peft, with no prefix.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from app.calc.adapter_file import PREFIX
from app.calc.architecture import split_layer
from app.calc.matching import compiled, is_all_linear, pattern_key
from app.spec.errors import FieldError, describe
from app.spec.limits import (
    MAX_TENSOR_DIM,
    MAX_TENSOR_DIMS,
    MAX_WEIGHTS_HEADER_BYTES,
    MAX_WEIGHTS_KEY_LENGTH,
    MAX_WEIGHTS_METADATA_KEYS,
    MAX_WEIGHTS_TENSORS,
)
from app.spec.lora import LoraSpec
from app.spec.text import parse_json

FIELD = "adapter_weights_header"
SOURCE = "read from the file's safetensors header"
# Bytes per element of each safetensors dtype (safetensors' Dtype enum); sub-byte float4 formats are not LoRA weights.
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "C64": 8,
}
# Where multimodal models keep their image encoder (gemma3/llava/paligemma: vision_tower; idefics/mllama:
# vision_model; qwen2-vl: visual); all-linear reaches into it.
VISION_PARTS = ("vision_tower", "vision_model", "visual")
LORA, EMBEDDING, PARAMETER, MLX = "linear", "embedding", "parameter", "mlx"

_PEFT_SUFFIXES = {  # key suffix -> role
    ".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_B.bias": "B_bias", ".lora_magnitude_vector": "magnitude",
    ".lora_embedding_A": "emb_A", ".lora_embedding_B": "emb_B",
}
_MLX_SUFFIXES = {".lora_a": "mlx_A", ".lora_b": "mlx_B", ".m": "mlx_magnitude"}
_NESTED = re.compile(r"(\.base_layer)+$")


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of the header."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightsHeader:
    """A checked safetensors header: its tensors in file order, metadata and length."""

    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str]
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        """Bytes of tensor data after the header."""
        return max((tensor.end for tensor in self.tensors), default=0)

    @property
    def file_bytes(self) -> int:
        """The file's exact size: length prefix, header, data."""
        return 8 + self.header_bytes + self.data_bytes


class WeightsModule(BaseModel):
    """Adapted modules of one name within a layer, with the same rank, shapes and extras."""

    name: str = Field(description="Name below the layer index (self_attn.q_proj), or the full name outside layers.")
    kind: str = Field(description="linear (lora_A/lora_B), embedding (lora_embedding_A/B), parameter (target_parameters, "
                                  "e.g. fused MoE experts) or mlx (mlx-lm's transposed lora_a/lora_b).")
    rank: int = Field(description="The rank saved: rows of A (for a parameter adapter, r x experts).")
    a_shape: list[int]
    b_shape: list[int]
    dtype: str
    dora: bool = Field(description="A DoRA magnitude vector is saved.")
    lora_bias: bool = Field(description="lora_B has a bias (lora_bias=True).")
    base_weights_saved: bool = Field(description="The wrapped layer's own weights are saved too (a targeted embedding).")
    experts: int | None = Field(None, description="Experts one parameter adapter covers (rank / r), when r is known.")
    vision: bool = Field(description="Inside the vision tower (vision_tower, vision_model or visual).")
    first: str = Field(description="Full name of the first of these modules, as saved (without base_model.model.).")
    count: int
    layers: list[int]
    params: int = Field(description="Elements of every tensor of these modules, all together.")


class WeightsCopy(BaseModel):
    """Tensors saved whole: modules_to_save copies, a targeted embedding's base weights, trainable biases."""

    name: str = Field(description="Owner module below the layer index.")
    what: str = Field(description="modules_to_save copy, bias, or other.")
    tensors: list[str] = Field(description="Parameter names saved for it (weight, bias).")
    count: int
    layers: list[int]
    params: int


class WeightsFinding(BaseModel):
    """A difference between the weights and the adapter_config (or the calculator's prediction), or a remark."""

    code: str
    severity: str = Field(description="warning or info.")
    message: str


class PredictedFile(BaseModel):
    """The calculator's exact adapter_model.safetensors for the config on the chosen model, against the file."""

    bytes: int = Field(description="Predicted size in the file's dtype (app/calc/adapter_file.py: calculated, exact).")
    dtype: str
    tensors: int
    matches: bool = Field(description="Same size, and the same keys and shapes.")
    missing: list[str] = Field(description="Keys predicted but not in the file (first 20).")
    unexpected: list[str] = Field(description="Keys in the file but not predicted (first 20).")
    different_shapes: list[str] = Field(description="Keys whose saved shape differs from the prediction (first 20).")


class AdapterWeights(BaseModel):
    """What adapter_model.safetensors holds, read from its header (figures: measured from the file, not estimated)."""

    source: str = SOURCE
    layout: str = Field(description="peft, or mlx-lm (transposed lora_a/lora_b, no base_model.model. prefix).")
    tensors: int
    params: int = Field(description="Elements of all tensors in the file.")
    lora_params: int = Field(description="Elements of the adapter tensors (A, B, lora_B bias, DoRA magnitude).")
    copied_params: int = Field(description="Elements of tensors saved whole (modules_to_save, biases, embedding base weights).")
    file_bytes: int = Field(description="Exact size: 8 + header + data, from the header's offsets.")
    header_bytes: int
    dtypes: list[str]
    ranks: list[int] = Field(description="Distinct ranks saved.")
    metadata: dict[str, str]
    modules: list[WeightsModule]
    copies: list[WeightsCopy]
    findings: list[WeightsFinding] = Field(default_factory=list)
    predicted: PredictedFile | None = Field(None, description="Set when the base model is known.")


# ---- reading and bounding the header ---------------------------------------------------------------------------


def header_of_file(content: bytes, loc: tuple[str | int, ...] = (FIELD,)) -> WeightsHeader:
    """The header of a whole (or truncated) safetensors file; only the header is parsed, the data only counted."""
    if len(content) < 8:
        raise FieldError(loc, f"a safetensors file starts with an 8-byte header length; this one has {len(content)} bytes",
                         "weights_header")
    length = struct.unpack("<Q", content[:8])[0]
    _check_length(length, loc)
    if len(content) < 8 + length:
        raise FieldError(loc, f"the header says it is {length:,} bytes long but the file ends after {len(content) - 8:,}",
                         "weights_header")
    return header_of_text(content[8:8 + length], loc, file_bytes=len(content))


def header_of_text(text: str | bytes, loc: tuple[str | int, ...] = (FIELD,), file_bytes: int | None = None) -> WeightsHeader:
    """A header as JSON text (what the browser sends), checked as safetensors checks it; `file_bytes` bounds the offsets."""
    raw = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text  # a lone surrogate: not UTF-8
    _check_length(len(raw), loc)
    try:
        value = parse_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise FieldError(loc, f"the safetensors header is {reason}", "weights_header") from None
    return header_of_json(value, loc, len(raw), file_bytes)


def header_of_json(value: Any, loc: tuple[str | int, ...] = (FIELD,), text_bytes: int | None = None,
                   file_bytes: int | None = None) -> WeightsHeader:
    """A parsed header checked: tensor count, key lengths, dtypes, shapes, contiguous offsets within the file."""
    if not isinstance(value, dict):
        raise FieldError(loc, f"a safetensors header is a JSON object, got {describe(value)}", "weights_header")
    count = len(value) - ("__metadata__" in value)
    if count > MAX_WEIGHTS_TENSORS:
        raise FieldError(loc, f"the header lists {count:,} tensors; at most {MAX_WEIGHTS_TENSORS:,} are accepted",
                         "weights_too_many")
    metadata = _metadata(value.get("__metadata__", {}), loc)
    for text in [*value, *metadata, *metadata.values()]:
        _check_utf8(text, loc)
    tensors = sorted((_entry(key, item, loc) for key, item in value.items() if key != "__metadata__"),
                     key=lambda tensor: (tensor.start, tensor.end))
    position = 0
    for tensor in tensors:  # safetensors refuses gaps and overlaps: the data is the tensors back to back
        if tensor.start != position:
            raise FieldError(loc, f"{tensor.key!r} starts at byte {tensor.start:,} of the data, but the tensors before "
                             f"it end at {position:,}: the offsets overlap or leave a gap", "weights_offsets")
        position = tensor.end
    # an object (the API) is measured as safetensors writes it: compact JSON padded with spaces to a multiple of 8
    header_bytes = text_bytes if text_bytes is not None else -(-len(_canonical(value).encode()) // 8) * 8
    _check_length(header_bytes, loc)
    header = WeightsHeader(tensors=tuple(tensors), metadata=metadata, header_bytes=header_bytes)
    if file_bytes is not None and header.file_bytes != file_bytes:
        # safetensors refuses both: a short file is truncated, a longer one has bytes no tensor accounts for
        what = "it is truncated" if header.file_bytes > file_bytes else "bytes after the last tensor belong to none"
        raise FieldError(loc, f"the header and its offsets add up to {header.file_bytes:,} bytes but the file has "
                         f"{file_bytes:,}: {what}, or the header belongs to another file", "weights_offsets")
    return header


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check_utf8(text: str, loc: tuple[str | int, ...]) -> None:
    """A name JSON escapes can spell (a lone surrogate) but UTF-8 cannot, refused before anything prints it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(loc, f"the safetensors header holds a name that is not UTF-8 text: {ascii(text)[:60]}",
                         "weights_header") from None


def _check_length(length: int, loc: tuple[str | int, ...]) -> None:
    if length > MAX_WEIGHTS_HEADER_BYTES:
        raise FieldError(loc, f"the safetensors header is {length:,} bytes long; at most {MAX_WEIGHTS_HEADER_BYTES:,} "
                         "are accepted", "weights_too_large")
    if length < 2:
        raise FieldError(loc, "the safetensors header is empty", "weights_header")


def _metadata(value: Any, loc: tuple[str | int, ...]) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(key, str) and isinstance(item, str) for key, item in value.items()):
        raise FieldError(loc, "__metadata__ must map strings to strings, as safetensors writes it", "weights_header")
    if len(value) > MAX_WEIGHTS_METADATA_KEYS:
        raise FieldError(loc, f"__metadata__ has {len(value):,} keys; at most {MAX_WEIGHTS_METADATA_KEYS:,} are accepted",
                         "weights_too_many")
    return dict(value)


def _entry(key: str, item: Any, loc: tuple[str | int, ...]) -> TensorEntry:
    if len(key) > MAX_WEIGHTS_KEY_LENGTH:
        raise FieldError(loc, f"a tensor name is {len(key):,} characters long; at most {MAX_WEIGHTS_KEY_LENGTH:,} are "
                         "accepted", "weights_name_too_long")
    if not isinstance(item, dict) or set(item) != {"dtype", "shape", "data_offsets"}:
        raise FieldError(loc, f"tensor {describe(key)} must have exactly dtype, shape and data_offsets", "weights_header")
    dtype, shape, offsets = item["dtype"], item["shape"], item["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise FieldError(loc, f"tensor {describe(key)} has dtype {describe(dtype)}; safetensors' dtypes are "
                         f"{', '.join(DTYPE_BYTES)}", "weights_header")
    if (not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS
            or not all(type(size) is int and 0 <= size <= MAX_TENSOR_DIM for size in shape)):
        raise FieldError(loc, f"tensor {describe(key)} has shape {describe(shape)}; a shape is a list of at most "
                         f"{MAX_TENSOR_DIMS} sizes from 0 to {MAX_TENSOR_DIM:,}", "weights_header")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(at) is int and at >= 0 for at in offsets)
            or offsets[0] > offsets[1]):
        raise FieldError(loc, f"tensor {describe(key)} has data_offsets {describe(offsets)}; they are [start, end] with "
                         "0 <= start <= end", "weights_header")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise FieldError(loc, f"tensor {describe(key)} spans {offsets[1] - offsets[0]:,} bytes but its shape {shape} of {dtype} "
                         f"needs {expected:,}", "weights_offsets")
    return TensorEntry(key=key, dtype=dtype, shape=tuple(shape), start=offsets[0], end=offsets[1])


# ---- what was saved ----------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    name: str
    parts: dict[str, TensorEntry]
    mlx: bool = False
    base_weights: bool = False
    parameter: bool = False  # a lora.ParamWrapper (target_parameters), not a lora.Linear


def _mark_parameters(layers: dict[str, _Layer], spec: LoraSpec | None) -> None:
    """Nested wrappers (and the outermost one around them), and modules named by target_parameters, are parameters."""
    owners = {entry.rpartition(".")[0] for entry in (spec.target_parameters or ()) if "." in entry} if spec else set()
    for name, layer in layers.items():
        outer = _NESTED.sub("", name)
        layer.parameter = not layer.mlx and (
            outer != name or f"{name}.base_layer" in layers or not owners.isdisjoint(_dotted_suffixes(outer))
        )


def _dotted_suffixes(name: str) -> list[str]:
    """The name and every part of it after a dot: what peft's suffix matching of a plain name can hit."""
    return [name] + [name[index + 1:] for index, char in enumerate(name) if char == "."]


def read_weights(header: WeightsHeader, spec: LoraSpec | None = None) -> AdapterWeights:
    """Per module the rank, shapes, dtype and extras saved; whole copies apart; totals from the header.

    With the adapter_config's `spec`, adapters of target_parameters are told from Linear ones and their experts counted.
    """
    keys = {_strip(tensor.key): tensor for tensor in header.tensors}
    layers = _layers(keys)
    _mark_parameters(layers, spec)
    consumed = {tensor.key for layer in layers.values() for tensor in layer.parts.values()}
    copies: dict[str, dict[str, TensorEntry]] = {}
    for key, tensor in keys.items():
        if tensor.key in consumed:
            continue
        owner, _, param = key.rpartition(".")
        if owner.endswith(".base_layer") and owner.removesuffix(".base_layer") in layers and param == "weight":
            layers[owner.removesuffix(".base_layer")].base_weights = True
            consumed.add(tensor.key)
            continue
        copies.setdefault(owner, {})[param] = tensor
    modules = _module_rows([layer for layer in layers.values() if _rank(layer) is not None], spec)
    lora_params = sum(tensor.numel for layer in layers.values() for tensor in layer.parts.values())
    all_params = sum(tensor.numel for tensor in header.tensors)
    mlx = any(layer.mlx for layer in layers.values())
    return AdapterWeights(
        layout="mlx-lm" if mlx else "peft", tensors=len(header.tensors), params=all_params, lora_params=lora_params,
        copied_params=all_params - lora_params, file_bytes=header.file_bytes, header_bytes=header.header_bytes,
        dtypes=sorted({tensor.dtype for tensor in header.tensors}), ranks=sorted({row.rank for row in modules}),
        metadata=header.metadata, modules=modules, copies=_copy_rows(copies, layers),
    )


def _strip(key: str) -> str:
    return key.removeprefix(PREFIX)


def _rank(layer: _Layer) -> int | None:
    """The saved rank: rows of peft's A, columns of mlx's A (its last dimension but one for a 3-D switch layer)."""
    parts = layer.parts
    if "A" in parts and parts["A"].shape:
        return parts["A"].shape[0]
    if "emb_A" in parts and parts["emb_A"].shape:
        return parts["emb_A"].shape[0]
    if "mlx_A" in parts and len(parts["mlx_A"].shape) >= 2:
        shape = parts["mlx_A"].shape
        return shape[-2] if len(shape) == 3 else shape[-1]
    return None


def _kind(layer: _Layer) -> str:
    """mlx, embedding, parameter (a ParamWrapper: its `.base_layer` nesting says which parameter) or linear."""
    if layer.mlx:
        return MLX
    if "emb_A" in layer.parts:
        return EMBEDDING
    return PARAMETER if layer.parameter else LORA


def _expected_rank(name: str, spec: LoraSpec) -> tuple[int, str | None]:
    """r, or the rank_pattern value whose key peft would pick for this module (a parameter's owner module)."""
    if not spec.rank_pattern:
        return spec.r, None
    hit = pattern_key(tuple(spec.rank_pattern), _NESTED.sub("", name), "rank_pattern")
    return (spec.rank_pattern[hit], hit) if hit is not None else (spec.r, None)


def _module_rows(layers: list[_Layer], spec: LoraSpec | None) -> list[WeightsModule]:
    groups: dict[tuple, list[tuple[int | None, _Layer]]] = {}
    for layer in layers:
        kind = _kind(layer)
        index, template = split_layer(layer.name)
        a = layer.parts.get("A") or layer.parts.get("emb_A") or layer.parts.get("mlx_A")
        b = layer.parts.get("B") or layer.parts.get("emb_B") or layer.parts.get("mlx_B")
        key = (template, kind, _rank(layer), a.shape if a else (), b.shape if b else (), a.dtype if a else "",
               "magnitude" in layer.parts or "mlx_magnitude" in layer.parts, "B_bias" in layer.parts, layer.base_weights,
               _in_vision(layer.name))
        groups.setdefault(key, []).append((index, layer))
    rows = []
    for (template, kind, rank, a_shape, b_shape, dtype, dora, bias, base, vision), members in groups.items():
        experts = None
        if kind == PARAMETER and spec is not None:
            expected = _expected_rank(members[0][1].name, spec)[0]
            experts = rank // expected if rank % expected == 0 else None
        rows.append(WeightsModule(
            name=template, kind=kind, rank=rank, a_shape=list(a_shape), b_shape=list(b_shape), dtype=dtype, dora=dora,
            lora_bias=bias, base_weights_saved=base, experts=experts, vision=vision, first=members[0][1].name,
            count=len(members), layers=sorted({index for index, _ in members if index is not None}),
            params=sum(tensor.numel for _, layer in members for tensor in layer.parts.values()),
        ))
    return rows


def _copy_rows(copies: dict[str, dict[str, TensorEntry]], layers: Mapping[str, _Layer]) -> list[WeightsCopy]:
    groups: dict[tuple, list[tuple[int | None, int]]] = {}
    for owner, params in copies.items():
        index, template = split_layer(owner)
        dotted = f".{owner}."
        if ".original_module." in dotted:
            what = "modules_to_save: the original module's bias"
        elif ".modules_to_save." in dotted:
            what = "modules_to_save copy"
        elif set(params) == {"bias"}:
            what = "bias of an adapted layer" if owner.endswith(".base_layer") else "bias"
        elif "weight" in params:
            what = "modules_to_save copy"
        else:
            what = "other"
        template = _NESTED.sub("", template)
        groups.setdefault((template, what, tuple(sorted(params))), []).append(
            (index, sum(tensor.numel for tensor in params.values())))
    return [WeightsCopy(name=template, what=what, tensors=list(names), count=len(members),
                        layers=sorted({index for index, _ in members if index is not None}),
                        params=sum(size for _, size in members))
            for (template, what, names), members in groups.items()]


def _in_vision(name: str) -> bool:
    parts = name.split(".")
    return any(part in VISION_PARTS for part in parts)


# ---- the weights against the adapter_config ---------------------------------------------------------------------


def _layers(keys: Mapping[str, TensorEntry]) -> dict[str, _Layer]:
    """Adapter tensors (keys without the prefix) grouped by the module they adapt."""
    layers: dict[str, _Layer] = {}
    for key, tensor in keys.items():
        for suffixes, mlx in ((_PEFT_SUFFIXES, False), (_MLX_SUFFIXES, True)):
            suffix = next((suffix for suffix in suffixes if key.endswith(suffix)), None)
            # mlx's DoRA magnitude is a bare `.m`: only beside a lora_a is it one
            if suffix is not None and not (suffix == ".m" and key[:-2] + ".lora_a" not in keys):
                owner = key[:-len(suffix)]
                layers.setdefault(owner, _Layer(owner, {}, mlx)).parts[suffixes[suffix]] = tensor
                break
    return layers


def _full_names(header: WeightsHeader, spec: LoraSpec) -> dict[str, tuple[str, _Layer]]:
    """Adapted module name -> (kind, layer), full names (the rows group them by template)."""
    layers = _layers({_strip(tensor.key): tensor for tensor in header.tensors})
    _mark_parameters(layers, spec)
    return {name: (_kind(layer), layer) for name, layer in layers.items() if _rank(layer) is not None}


def compare_with_config(weights: AdapterWeights, header: WeightsHeader, spec: LoraSpec) -> list[WeightsFinding]:
    """Targets that matched nothing, ranks that differ from r / rank_pattern, DoRA and lora_bias that disagree."""
    findings: list[WeightsFinding] = []
    adapted = _full_names(header, spec)
    module_names = [name for name, (kind, _) in adapted.items() if kind != PARAMETER]
    targets = spec.target_modules
    if isinstance(targets, str) and not is_all_linear(targets):
        pattern = compiled(targets)
        if not any(pattern.fullmatch(name) for name in module_names):
            findings.append(_finding("target_unmatched", "warning",
                                     f"target_modules {targets!r} matches none of the {len(module_names)} modules saved."))
    elif isinstance(targets, (list, set, frozenset, tuple)):
        suffixes = {suffix for name in module_names for suffix in _dotted_suffixes(name)}
        unmatched = sorted(target for target in targets if target not in suffixes)
        if unmatched:
            findings.append(_finding(
                "target_unmatched", "warning",
                f"target_modules {', '.join(unmatched)} matched no module saved in the file: nothing of that name was "
                "trained (on a MoE model peft 0.21 may have moved it to target_parameters).",
            ))
    rank_keys = tuple(spec.rank_pattern or {})
    used_keys: set[str] = set()
    differ: dict[tuple[int, int], list[str]] = {}
    for name, (kind, layer) in adapted.items():
        expected, hit = _expected_rank(name, spec)
        if hit is not None:
            used_keys.add(hit)
        saved = _rank(layer)
        if kind == PARAMETER and saved and saved % expected == 0:
            continue  # r x experts: how many experts the tensor holds is not in the file
        if saved != expected:
            differ.setdefault((saved, expected), []).append(name)
    for (saved, expected), names in sorted(differ.items()):
        shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        why = "a rank_pattern key the config names did not apply" if rank_keys else "r in the config is not what was trained"
        findings.append(_finding("rank_differs", "warning",
                                 f"{len(names)} module(s) saved at rank {saved} where the config gives {expected} ({shown}): {why}."))
    unused = [key for key in rank_keys if key not in used_keys]
    if unused:
        findings.append(_finding("rank_pattern_unused", "warning",
                                 f"rank_pattern key(s) {', '.join(map(repr, unused))} match no module saved in the file."))
    dora = any(row.dora for row in weights.modules)
    if dora != spec.use_dora:
        saved_text = "has DoRA magnitude vectors" if dora else "has no DoRA magnitude vector"
        findings.append(_finding("dora_differs", "warning", f"The file {saved_text} but the config says use_dora={spec.use_dora}."))
    lora_bias = any(row.lora_bias for row in weights.modules)
    if lora_bias != spec.lora_bias:
        findings.append(_finding("lora_bias_differs", "warning",
                                 f"lora_B {'has' if lora_bias else 'has no'} bias in the file but the config says lora_bias={spec.lora_bias}."))
    saved_copies = [row for row in weights.copies if row.what == "modules_to_save copy"]
    for entry in spec.modules_to_save or []:
        if not any(f".{entry}." in f".{row.name}." or row.name.endswith(entry) for row in saved_copies):
            findings.append(_finding("modules_to_save_missing", "warning",
                                     f"modules_to_save names {entry!r} but no full copy of it is in the file."))
    return findings


def remarks(weights: AdapterWeights) -> list[WeightsFinding]:
    """What the weights say on their own: the vision tower adapted, mlx-lm's transposed layout."""
    findings = []
    vision = [row for row in weights.modules if row.vision]
    if vision:
        count = sum(row.count for row in vision)
        findings.append(_finding(
            "vision_tower_adapted", "warning",
            f"{count} module(s) of the vision tower are adapted ({', '.join(row.first for row in vision[:3])}"
            f"{' ...' if len(vision) > 3 else ''}): "
            "all-linear or a broad regex reaches the image encoder too; for a text-only fine-tune, exclude it "
            "(exclude_modules or a regex over language_model only).",
        ))
    if weights.layout == "mlx-lm":
        findings.append(_finding(
            "transposed_layout", "warning",
            "mlx-lm layout: lora_a is (in, r) and lora_b is (r, out), the transpose of peft's lora_A (r, in) and "
            "lora_B (out, r), and keys lack base_model.model.; peft cannot load this file as it is: transpose both "
            "and rename the keys (mlx-lm's fuse, or a conversion script) first.",
        ))
    return findings


def compare_with_prediction(header: WeightsHeader, weights: AdapterWeights, predicted: list[tuple[str, tuple[int, ...]]],
                            fp32_bytes: int, bf16_bytes: int) -> PredictedFile:
    """The file against adapter_file.saved_tensors and adapter_file_bytes for the config on the chosen model."""
    expected = {PREFIX + key: shape for key, shape in predicted}
    actual = {tensor.key: tensor.shape for tensor in header.tensors}
    dtype = weights.dtypes[0] if len(weights.dtypes) == 1 else "mixed"
    size = fp32_bytes if dtype == "F32" else bf16_bytes if dtype in ("BF16", "F16") else 0
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    different = sorted(key for key in set(expected) & set(actual) if tuple(expected[key]) != actual[key])
    return PredictedFile(
        bytes=size, dtype=dtype, tensors=len(expected), matches=size == weights.file_bytes and not (missing or unexpected or different),
        missing=missing[:20], unexpected=unexpected[:20], different_shapes=different[:20],
    )


def _finding(code: str, severity: str, message: str) -> WeightsFinding:
    return WeightsFinding(code=code, severity=severity, message=message)
