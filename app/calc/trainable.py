"""Trainable parameters exactly as peft 0.21 counts them (`get_nb_trainable_parameters`), module by module."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.calc.architecture import ADAPTABLE_KINDS, CONV, EMBEDDING, Architecture, Module, Param
from app.calc.matching import FieldPattern, SegmentShield, compiled, is_all_linear, layer_index, pattern_key, shield, wrapped_by_modules_to_save
from app.spec.errors import FieldError
from app.spec.lora import LoraSpec
from app.calc.targets import ResolvedTargets, resolve_targets

PARAMETER = "parameter"
# Heads peft's task-specific PeftModel classes add to modules_to_save. PeftModelForSequenceClassification adds them
# before injecting LoRA (so they are shielded from targets); the token-classification and question-answering
# classes add them afterwards (a head LoRA already wraps makes peft fail).
SAVED_BEFORE_INJECTION = {"SEQ_CLS": ("classifier", "score")}
SAVED_AFTER_INJECTION = {"TOKEN_CLS": ("classifier", "score"), "QUESTION_ANS": ("qa_outputs",)}


@dataclass(frozen=True, slots=True)
class Adapted:
    """One module (lora.Linear / lora.Embedding) or parameter (lora.ParamWrapper) that peft adapts."""

    name: str
    template: str
    layer: int | None
    kind: str
    in_features: int
    out_features: int
    experts: int
    r: int
    alpha: float
    scaling: float
    lora_params: int  # A and B
    extra_params: int  # DoRA magnitude and lora_B bias
    trainable: int  # what this wrapper adds to the trainable count


@dataclass
class ParamCount:
    """Totals and per-tensor detail of one LoRA configuration on one architecture."""

    adapted: list[Adapted]
    saved_modules: list[tuple[str, int]]
    trainable_bias: int
    trainable: int
    base: int
    total: int
    resolved: ResolvedTargets
    unmatched_targets: list[str] = field(default_factory=list)
    unused_rank_patterns: list[str] = field(default_factory=list)
    unused_alpha_patterns: list[str] = field(default_factory=list)
    excluded_nothing: bool = False


def scaling_of(alpha: float, r: int, use_rslora: bool) -> float:
    """alpha/r, or alpha/sqrt(r) with rsLoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def count_trainable(spec: LoraSpec, arch: Architecture) -> ParamCount:
    """Reproduce peft's matching and layer creation, and count what becomes trainable."""
    spec = with_task_heads(spec)
    resolved = resolve_targets(spec, arch)
    targets = resolved.target_modules
    exclude = spec.exclude_modules
    exclude_set = frozenset(exclude) if isinstance(exclude, list) else None
    exclude_regex = compiled(exclude, "exclude_modules") if isinstance(exclude, str) else None
    shields = [shield(name) for name in dict.fromkeys(spec.modules_to_save or ())]
    rank_keys = tuple(resolved.rank_pattern)
    alpha_keys = tuple(resolved.alpha_pattern)
    used_rank: set[str] = set()
    used_alpha: set[str] = set()

    adapted: list[Adapted] = []
    adapted_modules: set[str] = set()
    excluded = _excluded_modules(spec, arch, exclude_set, exclude_regex, shields)
    matched = _matched_modules(spec, arch, targets) - excluded
    for name in matched:
        reason = arch.refused_targets.get(name.rpartition(".")[2])
        if reason:
            raise FieldError(("lora", "target_modules"), f"peft refuses {name} on {arch.model_type}: {reason}", "unsupported_target")
    excluded_any = bool(excluded)
    unmatched_any = len(arch.modules) - len(excluded) - len(matched) > 0
    position = arch.position
    by_name = arch.by_name
    shapes: dict[tuple, Adapted] = {}  # layers repeat: one computed wrapper per shape, renamed per module
    for key in sorted(matched, key=position.__getitem__):
        r, alpha = _rank_alpha(spec, resolved, rank_keys, alpha_keys, key, used_rank, used_alpha)
        module = by_name[key]
        shape = (module.template, module.kind, module.in_features, module.out_features, r, alpha)
        first = shapes.get(shape)
        if first is None:
            first = shapes[shape] = _adapt_module(spec, module, r, alpha)
            adapted.append(first)
        else:
            adapted.append(Adapted(key, first.template, module.layer, first.kind, first.in_features, first.out_features,
                                   1, r, alpha, first.scaling, first.lora_params, first.extra_params, first.trainable))
        adapted_modules.add(key)

    adapted_params = _adapt_parameters(spec, arch, resolved, adapted_modules, rank_keys, alpha_keys, used_rank, used_alpha)
    adapted.extend(adapted_params)
    if not adapted:
        _raise_nothing_targeted(spec, resolved, excluded_any, unmatched_any)

    late = SAVED_AFTER_INJECTION.get(spec.task_type or "", ())
    saved = _modules_to_save(spec.model_copy(update={"modules_to_save": [*(spec.modules_to_save or ()), *late]})
                             if late else spec, arch, adapted_modules)
    lora_total = sum(item.trainable for item in adapted)
    lora_all = sum(item.lora_params + item.extra_params for item in adapted)
    copies = sum(size for _, size in saved)
    bias = _trainable_bias(spec, arch, adapted_modules, {item.name.rpartition(".")[0] for item in adapted_params})
    trainable = lora_total + copies + bias
    return ParamCount(
        adapted=adapted,
        saved_modules=saved,
        trainable_bias=bias,
        trainable=trainable,
        base=arch.base_params,
        total=arch.base_params + lora_all + copies,
        resolved=resolved,
        unmatched_targets=_unmatched_entries(spec, arch),
        unused_rank_patterns=[key for key in spec.rank_pattern if key not in used_rank],
        unused_alpha_patterns=[key for key in spec.alpha_pattern if key not in used_alpha],
        # peft lists a module shielded by modules_to_save as excluded too, and warns only when nothing was excluded
        excluded_nothing=bool(exclude) and not excluded_any,
    )


def with_task_heads(spec: LoraSpec) -> LoraSpec:
    """The spec with the heads its task_type's PeftModel class adds to modules_to_save before injecting LoRA."""
    heads = SAVED_BEFORE_INJECTION.get(spec.task_type or "")
    if not heads:
        return spec
    return spec.model_copy(update={"modules_to_save": [*(spec.modules_to_save or ()), *heads]})


def _excluded_modules(
    spec: LoraSpec,
    arch: Architecture,
    exclude_set: frozenset[str] | None,
    exclude_regex: FieldPattern | None,
    shields: list[SegmentShield],
) -> set[str]:
    """Modules peft skips (and lists as excluded): matched by exclude_modules, or shielded by modules_to_save."""
    excluded: set[str] = set()
    if exclude_set:
        for name in exclude_set:
            if name in arch.by_name:
                excluded.add(name)
            excluded.update(arch.suffix_index.get(name, ()))
    elif exclude_regex is not None:
        excluded.update(module.name for module in arch.modules if exclude_regex.fullmatch(module.name))
    if shields:
        excluded.update(module.name for module in arch.modules if any(entry.covers(module.name) for entry in shields))
    return excluded


def _matched_modules(spec: LoraSpec, arch: Architecture, targets: str | frozenset[str] | None) -> set[str]:
    """Modules target_modules reaches, before exclusions (peft's check_target_module_exists)."""
    if targets is None:
        return set()
    if isinstance(targets, str):
        regex = compiled(targets)
        return {module.name for module in arch.modules if regex.fullmatch(module.name)}
    exact = {name for name in targets if name in arch.by_name}
    by_suffix: set[str] = set()
    for name in targets:
        by_suffix.update(arch.suffix_index.get(name, ()))
    by_suffix -= exact
    layers = spec.layers_to_transform
    if layers is not None and (not isinstance(layers, list) or layers):
        wanted = {layers} if isinstance(layers, int) else set(layers)
        by_suffix = {name for name in by_suffix if layer_index(name, spec.layers_pattern) in wanted}
    return exact | by_suffix


def _rank_alpha(
    spec: LoraSpec,
    resolved: ResolvedTargets,
    rank_keys: tuple[str, ...],
    alpha_keys: tuple[str, ...],
    key: str,
    used_rank: set[str],
    used_alpha: set[str],
) -> tuple[int, float]:
    r, alpha = spec.r, spec.lora_alpha
    if rank_keys:
        hit = pattern_key(rank_keys, key, "rank_pattern")
        if hit is not None:
            r = resolved.rank_pattern[hit]
            used_rank.add(hit)
    if alpha_keys:
        hit = pattern_key(alpha_keys, key, "alpha_pattern")
        if hit is not None:
            alpha = resolved.alpha_pattern[hit]
            used_alpha.add(hit)
    return r, alpha


def _adapt_module(spec: LoraSpec, module: Module, r: int, alpha: float) -> Adapted:
    """lora.Linear or lora.Embedding on one module; anything else is refused as peft refuses it."""
    if module.kind not in ADAPTABLE_KINDS:
        raise FieldError(
            ("lora", "target_modules"),
            f"{module.name} is a {module.cls}, which peft cannot adapt (only Linear, Embedding and Conv1D layers); "
            "name its Linear children instead"
            + (" or use target_parameters for its weights" if module.params and module.kind != EMBEDDING else ""),
            "unsupported_target",
        )
    if module.kind == EMBEDDING and spec.lora_bias:
        raise FieldError(
            ("lora", "lora_bias"), f"lora_bias=True is not supported on Embedding layers ({module.name})", "conflict"
        )
    n_in, n_out = module.in_features, module.out_features
    if module.kind == CONV:
        if r % module.groups:
            raise FieldError(("lora", "r"), f"{module.name} is a {module.cls} with groups={module.groups}; peft needs "
                             f"a rank divisible by it, got {r}", "conflict")
        # lora_A is a conv with the base kernel (in -> r), lora_B a 1x1 grouped conv (r -> out)
        lora = r * n_in * module.kernel + n_out * (r // module.groups)
    else:
        lora = r * (n_in + n_out)
    extra = (n_out if spec.use_dora else 0) + (n_out if spec.lora_bias else 0)
    # MiCA freezes B right after it is built: only A (r x in) trains
    trainable = r * n_in + extra if spec.init_lora_weights == "mica" else lora + extra
    return Adapted(
        name=module.name,
        template=module.template,
        layer=module.layer,
        kind=module.kind,
        in_features=n_in,
        out_features=n_out,
        experts=1,
        r=r,
        alpha=alpha,
        scaling=scaling_of(alpha, r, spec.use_rslora),
        lora_params=lora,
        extra_params=extra,
        trainable=trainable,
    )


def _adapt_parameters(
    spec: LoraSpec,
    arch: Architecture,
    resolved: ResolvedTargets,
    adapted_modules: set[str],
    rank_keys: tuple[str, ...],
    alpha_keys: tuple[str, ...],
    used_rank: set[str],
    used_alpha: set[str],
) -> list[Adapted]:
    """lora.ParamWrapper on each matched nn.Parameter (2-D, or 3-D for fused experts)."""
    names = resolved.target_parameters
    if not names:
        return []
    suffixes = tuple(f".{name}" for name in names)
    result: list[Adapted] = []
    for module in arch.modules:
        for param in module.params:
            key = f"{module.name}.{param.name}"
            if key not in names and not key.endswith(suffixes):
                continue
            if module.name in adapted_modules:
                raise FieldError(
                    ("lora", "target_parameters"),
                    f"{key} belongs to {module.name}, which target_modules already adapts; peft cannot do both",
                    "conflict",
                )
            _check_parameter_wrapper(spec, key, param)
            r, alpha = _rank_alpha(spec, resolved, rank_keys, alpha_keys, key, used_rank, used_alpha)
            experts, n_in, n_out = _parameter_features(param)
            lora = r * experts * (n_in + n_out)
            result.append(
                Adapted(
                    name=key,
                    template=key.split(".", 3)[-1] if module.layer is not None else key,
                    layer=module.layer,
                    kind=PARAMETER,
                    in_features=n_in,
                    out_features=n_out,
                    experts=experts,
                    r=r,
                    alpha=alpha,
                    scaling=scaling_of(alpha, r, spec.use_rslora),
                    lora_params=lora,
                    extra_params=0,
                    trainable=lora,
                )
            )
    return result


def _check_parameter_wrapper(spec: LoraSpec, key: str, param: Param) -> None:
    """What lora.ParamWrapper refuses."""
    problems = [
        ("lora_dropout", spec.lora_dropout != 0, "lora_dropout must be 0"),
        ("use_dora", spec.use_dora, "DoRA is not available"),
        ("lora_bias", spec.lora_bias, "lora_bias is not available"),
        ("fan_in_fan_out", spec.fan_in_fan_out, "fan_in_fan_out must be false"),
    ]
    for field_name, failed, reason in problems:
        if failed:
            raise FieldError(
                ("lora", field_name),
                f"{reason} when peft adapts a parameter directly ({key}, through target_parameters)",
                "conflict",
            )
    if len(param.shape) not in (2, 3):
        raise FieldError(
            ("lora", "target_parameters"),
            f"{key} is a {len(param.shape)}-D parameter; peft adapts only 2-D and 3-D parameters",
            "unsupported_target",
        )


def _parameter_features(param: Param) -> tuple[int, int, int]:
    """(experts, in, out) as ParamWrapper reads them: 3-D is (experts, out, in), 2-D is (out, in)."""
    if len(param.shape) == 3:
        experts, n_out, n_in = param.shape
        return experts, n_in, n_out
    n_out, n_in = param.shape
    return 1, n_in, n_out


def _raise_nothing_targeted(spec: LoraSpec, resolved: ResolvedTargets, excluded: bool, unmatched: bool) -> None:
    """peft's NoMatchingPeftModuleError, as a field error."""
    if excluded and not unmatched:
        message = "every targeted module is excluded (exclude_modules or modules_to_save); nothing would be adapted"
        loc = "exclude_modules"
    elif not excluded and unmatched and not resolved.target_modules:
        message = "no target_modules and no target_parameters reach this model; nothing would be adapted"
        loc = "target_modules"
    elif not excluded and unmatched:
        shown = resolved.target_modules if isinstance(resolved.target_modules, str) else sorted(resolved.target_modules or ())
        message = f"target_modules {shown!r} match no module of this model"
        if spec.layers_to_transform is not None:
            message += f" in layers {spec.layers_to_transform}"
        loc = "target_modules"
    else:
        message = (
            "no module is left to adapt: the targets are unmatched or excluded by exclude_modules / modules_to_save"
        )
        loc = "target_modules"
    raise FieldError(("lora", loc), message, "no_target")


def _modules_to_save(spec: LoraSpec, arch: Architecture, adapted_modules: set[str]) -> list[tuple[str, int]]:
    """Full trainable copies (ModulesToSaveWrapper) of every module whose name ends with an entry."""
    if not spec.modules_to_save:
        return []
    matched = [module.name for module in arch.modules if wrapped_by_modules_to_save(spec.modules_to_save, module.name)]
    if not matched:
        return []
    for name in matched:
        if name in adapted_modules:
            raise FieldError(
                ("lora", "modules_to_save"),
                f"{name} ends with a modules_to_save entry but is also a LoRA target; peft fails on that "
                "(entries match by plain suffix, so 'proj' hits q_proj): give full module names",
                "conflict",
            )
    for outer in matched:
        for inner in matched:
            if inner.startswith(outer + "."):
                raise FieldError(
                    ("lora", "modules_to_save"),
                    f"modules_to_save matches {outer} and also {inner} inside it; save only the outer module",
                    "conflict",
                )
    return [(name, arch.subtree_params(name)) for name in matched]


def _trainable_bias(spec: LoraSpec, arch: Architecture, adapted_modules: set[str], param_owners: set[str]) -> int:
    """bias="all": every bias of the model; "lora_only": the biases of adapted layers."""
    if spec.bias == "all":
        return arch.bias_params
    if spec.bias == "lora_only":
        owners = adapted_modules | param_owners
        return sum(
            param.numel
            for name in owners
            if (module := arch.by_name.get(name)) is not None
            for param in module.params
            if param.name == "bias"
        )
    return 0


def _unmatched_entries(spec: LoraSpec, arch: Architecture) -> list[str]:
    """Entries of a target_modules list that name nothing in this model (peft stays silent if others match)."""
    if not isinstance(spec.target_modules, list) or is_all_linear(spec.target_modules):
        return []
    known = arch.all_suffixes
    return [name for name in dict.fromkeys(spec.target_modules) if name not in known]  # each once, however often listed

