"""compute(): one call from a CalcRequest to a CalcResult (counts, scaling, memory, lints)."""

from __future__ import annotations

from typing import Any

from app.calc.adapter_file import adapter_file_bytes
from app.calc.architecture import Architecture
from app.calc.catalogue import Catalogue, load_catalogue
from app.calc.fit import FitReport, Lever, fit_report
from app.calc.tree import TreeSource, task_for
from app.calc.lints import collect_lints
from app.calc.memory import BatchShape, approximation_note, estimate_memory
from app.calc.request import CalcRequest
from app.calc.result import (
    AdapterFileSize,
    CalcResult,
    FitResult,
    LeverResult,
    LintResult,
    MemoryComponent,
    MemoryResult,
    ModelInfo,
    ModuleRow,
    SavedModule,
    ScalingSummary,
    TrainingSummary,
)
from app.calc.trainable import Adapted, ParamCount, count_trainable
from app.spec.errors import FieldError


def compute(request: CalcRequest | dict[str, Any], catalogue: Catalogue | None = None,
            trees: TreeSource | None = None, shape: BatchShape | None = None, cpu: bool | None = None) -> CalcResult:
    """Validate (if given a dict) and compute; raises pydantic.ValidationError or FieldError (both ValueError).

    Catalogue models use their shipped trees; a pasted config.json needs `trees` (app.jobs.trees.TreeService).
    `shape` replaces the calculator's assumed peak micro-batch with one measured from real data (a job's); `cpu`
    says the run trains on CPU whatever its base dtype (a job on the CPU worker; default: fp32 means CPU).
    """
    if not isinstance(request, CalcRequest):
        request = CalcRequest.model_validate(request)
    catalogue = catalogue or load_catalogue()
    if request.model is not None:
        entry = catalogue.get(request.model)
        info_id, name, hf_id = entry.id, entry.name, entry.hf_id
        arch = entry.architecture_for(request.lora.task_type, trees)
    else:
        config, info_id, hf_id = request.hf_config or {}, None, None
        name = _pasted_name(config)
        arch = architecture_of_config(config, request.lora.task_type, trees)
    count = count_trainable(request.lora, arch)
    return _result(request, arch, count, shape, cpu, ModelInfo(
        id=info_id, name=name, hf_id=hf_id, model_type=arch.model_type, family=arch.family,
        num_layers=arch.num_layers, hidden_size=arch.hidden_size, vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings, notes=list(arch.notes),
    ))


def architecture_of_config(config: dict[str, Any], task_type: str | None, trees: TreeSource | None) -> Architecture:
    """A pasted config.json's architecture, from the tree source."""
    if trees is None:
        raise FieldError(("model_config",), "a pasted config.json needs the module-tree helper, which this process "
                         "has not got; choose a catalogue model", "unavailable")
    return trees.architecture(config, task_for(task_type))


def _pasted_name(config: dict[str, Any]) -> str:
    """A pasted config.json's _name_or_path, else its first architecture, else a placeholder; only strings count."""
    architectures = config.get("architectures")
    first = architectures[0] if isinstance(architectures, list) and architectures else None
    return next((name for name in (config.get("_name_or_path"), first) if isinstance(name, str) and name), "pasted config.json")


def group_rows(adapted: list[Adapted]) -> list[ModuleRow]:
    """Adapted tensors grouped by (name in layer, kind, shape, r, alpha), in model order."""
    groups: dict[tuple, list[Adapted]] = {}
    for item in adapted:
        key = (item.template, item.kind, item.in_features, item.out_features, item.experts, item.r, item.alpha)
        groups.setdefault(key, []).append(item)
    rows = []
    for (template, kind, n_in, n_out, experts, r, alpha), items in groups.items():
        first = items[0]
        rows.append(ModuleRow(
            name=template, kind=kind, in_features=n_in, out_features=n_out, experts=experts, count=len(items),
            layers=[item.layer for item in items if item.layer is not None], r=r, alpha=alpha,
            scaling=first.scaling, params_each=first.trainable, params=sum(item.trainable for item in items),
        ))
    return rows


def _result(request: CalcRequest, arch: Architecture, count: ParamCount, shape: BatchShape | None, cpu: bool | None,
            info: ModelInfo) -> CalcResult:
    spec, training = request.lora, request.training
    memory = estimate_memory(arch, count, training, float(spec.lora_dropout), shape, spec.use_dora, cpu)
    lints = collect_lints(spec, training, arch, count)
    leaves = tuple(dict.fromkeys(item.template.rpartition(".")[2] for item in count.adapted))
    report = fit_report(request, arch, leaves, shape)
    fp32, bf16, tensors = adapter_file_bytes(spec, arch, count)
    targets = count.resolved.target_modules
    scalings = sorted({round(item.scaling, 12) for item in count.adapted})
    return CalcResult(
        model=info,
        trainable_params=count.trainable,
        base_params=count.base,
        all_params=count.total,
        trainable_percent=100 * count.trainable / count.total,
        adapter_file_bytes=AdapterFileSize(fp32=fp32, bf16=bf16, tensors=tensors),
        scaling=ScalingSummary(rule="alpha/sqrt(r)" if spec.use_rslora else "alpha/r", values=scalings),
        modules=group_rows(count.adapted),
        saved_modules=[SavedModule(name=name, params=size) for name, size in count.saved_modules],
        trainable_bias_params=count.trainable_bias,
        resolved_target_modules=targets if isinstance(targets, str) or targets is None else sorted(targets),
        resolved_target_parameters=sorted(count.resolved.target_parameters),
        memory=MemoryResult(
            components=[MemoryComponent(key=p.key, label=p.label, bytes=p.bytes, detail=p.detail,
                                        not_measured_on_gpu=list(p.not_measured_on_gpu)) for p in memory.parts],
            total_bytes=memory.total_bytes,
            allocated_bytes=memory.allocated_bytes,
            reserved_bytes=memory.reserved_bytes,
            basis=memory.basis,
            assumptions=memory.assumptions,
            sources=list(memory.sources),
            approximate=approximation_note(arch),
        ),
        fit=_fit_result(report) if report else None,
        training=TrainingSummary(effective_batch_size=training.effective_batch_size, tokens_per_step=training.tokens_per_step),
        lints=[LintResult(**vars(lint)) for lint in lints],
        lora=spec.model_dump(mode="json"),
    )


def _lever_result(lever: Lever) -> LeverResult:
    return LeverResult(key=lever.key, label=lever.label, cost=lever.cost, change=lever.change, total_bytes=lever.total_bytes,
                       status=lever.status, query=lever.query)


def _fit_result(report: FitReport) -> FitResult:
    return FitResult(
        gpu=report.gpu, capacity_bytes=report.capacity_bytes, total_bytes=report.total_bytes,
        headroom_bytes=report.headroom_bytes, status=report.status, longest_seq_length=report.longest_seq_length,
        largest_batch_size=report.largest_batch_size, levers=[_lever_result(lever) for lever in report.levers],
        suggested=_lever_result(report.suggested) if report.suggested else None,
    )
