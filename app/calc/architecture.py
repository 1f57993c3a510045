"""The modules and parameters of a model, as transformers builds it (read from a module tree, app.calc.tree)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

# What peft can wrap: nn.Linear and transformers' Conv1D get lora.Linear, nn.Embedding gets lora.Embedding,
# nn.Conv1d/2d/3d get lora.ConvNd.
LINEAR = "linear"
CONV1D = "conv1d"
CONV = "conv"
EMBEDDING = "embedding"
OTHER = "other"
ADAPTABLE_KINDS = frozenset({LINEAR, CONV1D, EMBEDDING, CONV})

_LAYER_INDEX = re.compile(r"^(?P<prefix>.*?\.[^.]*)\.(?P<idx>\d+)\.(?P<rest>.+)$")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter tensor owned directly by a module (`recurse=False`)."""

    name: str
    shape: tuple[int, ...]
    tied_to: str | None = None  # full name of the parameter this one shares storage with

    @property
    def numel(self) -> int:
        """Number of elements."""
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True, slots=True)
class Module:
    """One entry of `model.named_modules()`: its name, class, kind and own parameters."""

    name: str
    cls: str
    kind: str = OTHER
    in_features: int = 0
    out_features: int = 0
    params: tuple[Param, ...] = ()
    layer: int | None = None
    template: str = ""
    kernel: int = 1  # elements of a convolution's kernel
    groups: int = 1  # a convolution's groups

    @property
    def leaf(self) -> str:
        """The last component of the name (`q_proj`)."""
        return self.name.rpartition(".")[2]


def split_layer(name: str) -> tuple[int | None, str]:
    """The decoder layer index in a module name and the name without its layer prefix, as peft finds it."""
    match = _LAYER_INDEX.match(name)
    if match is None:
        return None, name
    return int(match.group("idx")), match.group("rest")


@dataclass(frozen=True)
class Architecture:
    """A model's module tree with shapes, and what peft does to its model type: enough to reproduce its count."""

    model_type: str
    family: str
    modules: tuple[Module, ...]
    output_layer: str  # name of get_output_embeddings(); all-linear never targets it
    input_embedding: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    gated_mlp: bool = True
    num_experts: int = 0
    experts_per_token: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    task: str = "causal-lm"
    classifier_head: str | None = None  # what all-linear leaves out under SEQ_CLS when there is no output layer
    default_target_modules: tuple[str, ...] | None = None  # peft's default for this model_type
    moe_renames: dict[str, str] = field(default_factory=dict)  # peft's transformers-5 rewrite: v4 name -> parameter
    moe_fused: dict[str, tuple[str, ...]] = field(default_factory=dict)  # fused parameter -> the v4 names it joins
    versions: dict[str, str] = field(default_factory=dict)  # libraries the tree was built with
    refused_targets: dict[str, str] = field(default_factory=dict)  # leaf name -> why peft refuses to adapt it here

    @cached_property
    def by_name(self) -> dict[str, Module]:
        """Modules by full name."""
        return {module.name: module for module in self.modules}

    @cached_property
    def dotted_suffixes(self) -> dict[str, tuple[str, ...]]:
        """For each module, every `x` such that its name ends with `.x`: peft's suffix match as set lookups."""
        result = {}
        for module in self.modules:
            parts = module.name.split(".")
            result[module.name] = tuple(".".join(parts[start:]) for start in range(1, len(parts)))
        return result

    @cached_property
    def all_suffixes(self) -> frozenset[str]:
        """Every name and dotted suffix in the model: a list entry matches something iff it is in here."""
        return frozenset(self.by_name) | frozenset(self.suffix_index)

    @cached_property
    def suffix_index(self) -> dict[str, tuple[str, ...]]:
        """Dotted suffix -> names of the modules ending with `.suffix`, in model order."""
        index: dict[str, list[str]] = {}
        for name, suffixes in self.dotted_suffixes.items():
            for suffix in suffixes:
                index.setdefault(suffix, []).append(name)
        return {suffix: tuple(names) for suffix, names in index.items()}

    @cached_property
    def position(self) -> dict[str, int]:
        """Index of each module in named_modules() order."""
        return {module.name: index for index, module in enumerate(self.modules)}

    @cached_property
    def all_linear_names(self) -> frozenset[str]:
        """What peft's "all-linear" expands to: every Linear/Conv1D except the output layer."""
        return frozenset(
            module.name for module in self.modules if module.kind in (LINEAR, CONV1D) and module.name != self.output_layer
        )

    @cached_property
    def base_params(self) -> int:
        """Parameters of the base model, tied tensors counted once (what `model.parameters()` yields)."""
        return sum(param.numel for module in self.modules for param in module.params if param.tied_to is None)

    @cached_property
    def bias_params(self) -> int:
        """Elements of every parameter named `bias` (what bias="all" unfreezes)."""
        return sum(
            param.numel
            for module in self.modules
            for param in module.params
            if param.name == "bias" and param.tied_to is None
        )

    def subtree_params(self, name: str) -> int:
        """Parameters of a module and its children, shared tensors counted once (a deepcopy's size)."""
        return sum(param.numel for param in self.subtree_tensors(name))

    def subtree_tensors(self, name: str) -> list[Param]:
        """The parameter tensors of a module and its children, a shared tensor once (what a deepcopy holds)."""
        prefix = name + "."
        seen: set[str] = set()
        tensors = []
        for module in self.modules:
            if module.name != name and not module.name.startswith(prefix):
                continue
            for param in module.params:
                identity = param.tied_to or f"{module.name}.{param.name}"
                if identity not in seen:
                    seen.add(identity)
                    tensors.append(param)
        return tensors
