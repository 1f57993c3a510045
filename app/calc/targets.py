"""Resolve what peft will target: its default target_modules per model_type and its transformers-5 MoE rewrite.

Both come with the module tree (app.training.trees reads them from the installed peft), so every model type
peft knows is covered without a table here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.calc.architecture import CONV1D, LINEAR, Architecture
from app.spec.errors import FieldError
from app.calc.matching import is_all_linear, is_excluded, shielded_by_modules_to_save, target_matches
from app.spec.lora import LoraSpec

@dataclass
class ResolvedTargets:
    """target_modules / target_parameters / patterns as peft holds them just before it matches modules."""

    target_modules: str | frozenset[str] | None
    target_parameters: frozenset[str]
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    notes: list[str] = field(default_factory=list)
    defaulted: bool = False


def resolve_targets(spec: LoraSpec, arch: Architecture) -> ResolvedTargets:
    """Apply peft's preparation steps in its order: MoE rewrite, then defaults, then all-linear."""
    resolved = ResolvedTargets(
        target_modules=spec.target_modules if isinstance(spec.target_modules, str) or spec.target_modules is None
        else frozenset(spec.target_modules),
        target_parameters=frozenset(spec.target_parameters or ()),
        rank_pattern=dict(spec.rank_pattern),
        alpha_pattern=dict(spec.alpha_pattern),
    )
    if arch.moe_renames and arch.moe_fused:
        _rewrite_moe_targets(spec, arch, resolved)
    if resolved.target_modules is None:
        defaults = arch.default_target_modules
        if defaults is not None:
            resolved.target_modules = frozenset(defaults)
            resolved.defaulted = True
        elif not resolved.target_parameters:
            raise FieldError(
                ("lora", "target_modules"),
                f"peft has no default target_modules for model_type {arch.model_type!r}; list them "
                f"(this model has {', '.join(_linear_leaves(arch)[:8]) or 'no Linear layers'}) or use \"all-linear\"",
                "missing",
            )
    if is_all_linear(resolved.target_modules):
        resolved.target_modules = all_linear_names(arch, spec.task_type)
    return resolved


def all_linear_names(arch: Architecture, task_type: str | None) -> frozenset[str]:
    """peft's all-linear: every Linear/Conv1D but the output layer (the classifier head under SEQ_CLS without one)."""
    if arch.output_layer or task_type != "SEQ_CLS" or not arch.classifier_head:
        return arch.all_linear_names
    return arch.all_linear_names - {arch.classifier_head}


def _linear_leaves(arch: Architecture) -> list[str]:
    leaves = dict.fromkeys(module.leaf for module in arch.modules if module.kind in (LINEAR, CONV1D))
    return [leaf for leaf in leaves if arch.output_layer.rpartition(".")[2] != leaf]


def _rewrite_moe_targets(spec: LoraSpec, arch: Architecture, resolved: ResolvedTargets) -> None:
    """peft's convert_peft_config_for_transformers: v4 expert names become target_parameters."""
    renames = arch.moe_renames
    fused = arch.moe_fused
    targets = resolved.target_modules
    if isinstance(targets, str):
        names = _leaf_names_of_string_target(spec, arch, targets, renames)
        if not names:
            return
        targets = frozenset(names)
    new_parameters = set(resolved.target_parameters)
    remaining: set[str] = set()
    seen_fused: dict[str, set[str]] = {name: set() for name in fused}
    for target in targets or ():
        for old_name, new_name in renames.items():
            if target == old_name or target.endswith(f".{old_name}"):
                new_parameters.add(new_name)
                if new_name in fused:
                    seen_fused[new_name].add(old_name)
                break
        else:
            remaining.add(target)
    for new_name, required in fused.items():
        present = seen_fused[new_name]
        if 0 < len(present) < len(required):
            missing = ", ".join(sorted(set(required) - present))
            raise FieldError(
                ("lora", "target_modules"),
                f"{', '.join(sorted(present))} cannot be targeted without {missing}: transformers 5 fuses them "
                f"into {new_name}, and peft refuses to adapt half of it",
                "fused_target",
            )
        if len(present) == len(required) > 1:
            key = rf".*\.{re.escape(new_name)}"
            resolved.rank_pattern[key] = spec.r * len(required)
            resolved.alpha_pattern[key] = spec.lora_alpha * len(required)
            resolved.notes.append(
                f"{' and '.join(required)} are fused into {new_name}: peft adapts it with rank {spec.r * len(required)} "
                f"and alpha {spec.lora_alpha * len(required)}, which keeps each half's alpha/r"
            )
    if new_parameters != set(resolved.target_parameters):
        resolved.notes.append(
            f"peft rewrote the {arch.model_type} expert and router names into target_parameters: "
            + ", ".join(sorted(new_parameters))
        )
    resolved.target_parameters = frozenset(new_parameters)
    resolved.target_modules = frozenset(remaining)


def _leaf_names_of_string_target(
    spec: LoraSpec, arch: Architecture, pattern: str, renames: dict[str, str]
) -> set[str]:
    """A regex or "all-linear" turned into the leaf names it reaches, including the fused v4 expert names."""
    if is_all_linear(pattern):
        return {name.rpartition(".")[2] for name in all_linear_names(arch, spec.task_type)} | set(renames)

    def hit(key: str) -> bool:
        if is_excluded(spec.exclude_modules, key) or shielded_by_modules_to_save(spec.modules_to_save, key):
            return False
        return target_matches(pattern, key)

    keys = [module.name for module in arch.modules]
    param_keys = [f"{module.name}.{param.name}" for module in arch.modules for param in module.params]
    matched = {key.rpartition(".")[2] for key in keys + param_keys if hit(key)}
    containers: dict[str, set[str]] = {}
    for key in param_keys:
        container, _, leaf = key.rpartition(".")
        containers.setdefault(leaf, set()).add(container)
    for old_name, new_name in renames.items():
        if old_name in matched:
            continue
        if any(hit(f"{container}.{old_name}") for container in containers.get(new_name, ())):
            matched.add(old_name)
    return matched
