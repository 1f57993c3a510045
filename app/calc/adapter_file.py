"""Size of the adapter_model.safetensors peft writes: tensor data exactly, plus its JSON header."""

from __future__ import annotations

from app.calc.architecture import Architecture
from app.calc.matching import compiled, is_all_linear
from app.spec.lora import LoraSpec
from app.calc.trainable import ParamCount

# One header entry: "base_model.model.<name>.lora_A.weight":{"dtype":"F32","shape":[8,4096],"data_offsets":[a,b]},
_ENTRY_OVERHEAD = len('"base_model.model.":{"dtype":"F32","shape":[,],"data_offsets":[,]},') + 24


EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")  # peft.utils.constants


def _saved_embeddings(spec: LoraSpec, arch: Architecture, count: ParamCount) -> list[tuple[str, int]]:
    """peft also saves the base weight of an adapted embedding layer when target_modules names one."""
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
        (f"{name}.base_layer.weight", arch.by_name[name].in_features * arch.by_name[name].out_features)
        for name in (arch.input_embedding, arch.output_layer)
        if name in adapted
    ]


def adapter_file_bytes(spec: LoraSpec, arch: Architecture, count: ParamCount) -> tuple[int, int, int]:
    """(fp32 bytes, bf16 bytes, tensor count) of adapter_model.safetensors; the header is estimated."""
    per_module = 2 + spec.lora_bias + spec.use_dora
    elements = sum(item.lora_params + item.extra_params for item in count.adapted)
    names = sum(len(item.name) for item in count.adapted) * per_module + 16 * len(count.adapted) * per_module
    tensors = len(count.adapted) * per_module
    for name, size in count.saved_modules:
        elements += size
        names += len(name)
        tensors += 1
    if spec.bias != "none":
        elements += count.trainable_bias
    for name, size in _saved_embeddings(spec, arch, count):
        elements += size
        names += len(name)
        tensors += 1
    header = 8 + names + tensors * _ENTRY_OVERHEAD + len('{"__metadata__":{"format":"pt"}}')
    return elements * 4 + header, elements * 2 + header, tensors
