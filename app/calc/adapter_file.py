"""Size of the adapter_model.safetensors peft writes, exactly: every tensor's key and shape, and the JSON header.

peft 0.21 saves the LoRA tensors of each adapted layer, the biases bias="all"/"lora_only" unfreezes, full copies
of modules_to_save, and the base weights of a targeted embedding layer. safetensors writes an 8-byte header length,
a JSON header (metadata, then each tensor's dtype, shape and byte offsets, sorted by name) padded with spaces to a
multiple of 8, then the tensor data in the same order.
"""

from __future__ import annotations

import math
from itertools import accumulate

from app.calc.architecture import CONV1D, EMBEDDING, LINEAR, Architecture, Module
from app.calc.matching import compiled, is_all_linear
from app.calc.trainable import PARAMETER, Adapted, ParamCount
from app.spec.lora import LoraSpec

PREFIX = "base_model.model."  # before every key in the file
METADATA = '{"__metadata__":{"format":"pt"}'  # what peft passes to safetensors' save_file
HEADER_ALIGNMENT = 8
EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")  # peft.utils.constants
# One header entry less its key, dtype, shape digits and offset digits (the comma before it is added apart)
_ENTRY_FRAME = len('"":{"dtype":"","shape":[],"data_offsets":[,]}')

Tensor = tuple[str, tuple[int, ...]]


def adapter_file_bytes(spec: LoraSpec, arch: Architecture, count: ParamCount) -> tuple[int, int, int]:
    """(fp32 bytes, bf16 bytes, tensor count) of adapter_model.safetensors, header included."""
    tensors = sorted(saved_tensors(spec, arch, count))  # safetensors orders the header and the data by key
    shape_digits = {shape: len(",".join(map(str, shape))) for shape in {shape for _, shape in tensors}}
    # the header without the dtypes and offsets: '{"__metadata__":...,"KEY":{"dtype":"","shape":[8,64],"data_offsets":[,]}...}'
    frame = len(METADATA) + 1 + len(tensors) * (1 + _ENTRY_FRAME + len(PREFIX))
    frame += sum(len(key) + shape_digits[shape] for key, shape in tensors)
    elements = [math.prod(shape) for _, shape in tensors]
    return _file_bytes(frame, elements, "F32", 4), _file_bytes(frame, elements, "BF16", 2), len(tensors)


def _file_bytes(frame: int, elements: list[int], dtype: str, itemsize: int) -> int:
    """8-byte length, header padded to a multiple of 8, data; elements in the file's order."""
    # never empty: peft refuses a configuration that adapts nothing, and so does count_trainable
    ends = list(accumulate(count * itemsize for count in elements))
    # each tensor's offsets are [start,end]: every end is written once as an end and, but the last, once as a start
    offset_digits = 2 * sum(len(str(end)) for end in ends) - len(str(ends[-1])) + len("0")
    header = frame + len(elements) * len(dtype) + offset_digits
    return 8 + -(-header // HEADER_ALIGNMENT) * HEADER_ALIGNMENT + ends[-1]


def saved_tensors(spec: LoraSpec, arch: Architecture, count: ParamCount) -> list[Tensor]:
    """(key, shape) of every tensor save_pretrained writes for this configuration; keys without PREFIX."""
    wrappers = _parameter_wrappers(count)
    tensors = [tensor for item in count.adapted for tensor in _lora_tensors(spec, item, wrappers)]
    saved_roots = [name for name, _ in count.saved_modules]
    for root in saved_roots:
        tensors.extend((f"{module.name}.{param.name}", param.shape) for module in _subtree(arch, root) for param in module.params)
    if spec.bias != "none":
        tensors.extend(_bias_tensors(spec, arch, count, wrappers, saved_roots))
    tensors.extend(_saved_embeddings(spec, arch, count))
    return tensors


def _parameter_wrappers(count: ParamCount) -> dict[str, list[str]]:
    """Module -> the parameters peft wraps in it, innermost wrapper first (the module's parameter order)."""
    wrappers: dict[str, list[str]] = {}
    for item in count.adapted:
        if item.kind == PARAMETER:
            owner, _, param = item.name.rpartition(".")
            wrappers.setdefault(owner, []).append(param)
    return wrappers


def _lora_tensors(spec: LoraSpec, item: Adapted, wrappers: dict[str, list[str]]) -> list[Tensor]:
    """lora_A/lora_B (and lora_B's bias, DoRA's magnitude) of one adapted module or parameter."""
    r, n_in, n_out = item.r, item.in_features, item.out_features
    if item.kind == EMBEDDING:
        tensors = [(f"{item.name}.lora_embedding_A", (r, n_in)), (f"{item.name}.lora_embedding_B", (n_out, r))]
    elif item.kind == PARAMETER:
        # nested ParamWrappers: each later parameter of the module wraps the earlier ones as its base_layer
        owner, _, param = item.name.rpartition(".")
        order = wrappers[owner]
        prefix = owner + ".base_layer" * (len(order) - 1 - order.index(param))
        rank = r * item.experts
        return [(f"{prefix}.lora_A.weight", (rank, n_in)), (f"{prefix}.lora_B.weight", (n_out, rank))]
    else:
        tensors = [(f"{item.name}.lora_A.weight", (r, n_in)), (f"{item.name}.lora_B.weight", (n_out, r))]
        if spec.lora_bias:
            tensors.append((f"{item.name}.lora_B.bias", (n_out,)))
    if spec.use_dora:
        tensors.append((f"{item.name}.lora_magnitude_vector", (n_out,)))
    return tensors


def _subtree(arch: Architecture, root: str) -> list[Module]:
    """The module and everything under it."""
    return [module for module in arch.modules if module.name == root or module.name.startswith(root + ".")]


def _bias_tensors(spec: LoraSpec, arch: Architecture, count: ParamCount, wrappers: dict[str, list[str]],
                  saved_roots: list[str]) -> list[Tensor]:
    """Biases bias="all" (every one in the state dict) or "lora_only" (those of adapted layers) adds, as keyed there."""
    layers = {item.name: 1 for item in count.adapted if item.kind in (LINEAR, CONV1D, EMBEDDING)}
    layers.update((owner, len(params)) for owner, params in wrappers.items())
    tensors = []
    biases = [(module, param) for module in arch.modules for param in module.params if param.name == "bias"]
    for module, param in biases:
        if module.name in layers:
            tensors.append((module.name + ".base_layer" * layers[module.name] + ".bias", param.shape))
        elif spec.bias == "all":
            root = next((root for root in saved_roots if module.name == root or module.name.startswith(root + ".")), None)
            if root is None:
                tensors.append((f"{module.name}.bias", param.shape))
            else:
                # the wrapper holds the original and the trainable copy; a key ending in the adapter name loses it
                inner = module.name[len(root):]
                copy = f"{root}.modules_to_save.bias" if not inner else f"{root}.modules_to_save.default{inner}.bias"
                tensors.extend([(f"{root}.original_module{inner}.bias", param.shape), (copy, param.shape)])
    return tensors


def _saved_embeddings(spec: LoraSpec, arch: Architecture, count: ParamCount) -> list[Tensor]:
    """peft also saves the base weights of an adapted embedding layer when target_modules names one."""
    targets = spec.target_modules
    if isinstance(targets, str):
        if is_all_linear(targets):
            return []
        targeted = any(
            compiled(targets).fullmatch(module.name)
            for module in arch.modules
            if any(compiled(rf"(.*\.)?{name}$").match(module.name) for name in EMBEDDING_LAYER_NAMES)
        )
    else:
        targeted = any(name in (targets or ()) for name in EMBEDDING_LAYER_NAMES)
    if not targeted:
        return []
    adapted = {item.name for item in count.adapted}
    return [
        (f"{name}.base_layer.{param.name}", param.shape)
        for name in (arch.input_embedding, arch.output_layer)
        if name in adapted
        for param in arch.by_name[name].params
    ]

