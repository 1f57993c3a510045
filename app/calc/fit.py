"""Will it fit on my GPU: a badge with the headroom, the longest sequence and largest micro-batch that fit, and levers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.calc.architecture import Architecture
from app.calc.memory import BatchShape, estimate_memory
from app.calc.request import CalcRequest, calculator_query
from app.calc.trainable import count_trainable
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

SAME_RESULT = ("optim", "micro_batch", "checkpointing", "nf4")  # levers that train (about) the same model; the rest train less
TIGHT = 0.90  # above this share of the GPU a run is "tight": allocator behaviour and other processes can tip it over
MAX_BATCH = 4096  # per_device_train_batch_size's bound in TrainingSpec
MIN_SEQ, MAX_SEQ = 8, 1_048_576  # max_seq_length's bounds in TrainingSpec
ATTENTION_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv", "out_proj", "dense")
PAIR = ("q_proj", "v_proj")  # the original LoRA paper's choice


@dataclass(frozen=True)
class Lever:
    """One change that lowers memory, what it costs, and the total it leads to."""

    key: str
    label: str
    cost: str  # what it costs in speed or in what is trained
    change: str  # the change, in field names
    request: CalcRequest
    total_bytes: int
    status: str

    @property
    def query(self) -> dict[str, str]:
        """Calculator query parameters that apply this lever."""
        return query_of(self.request)


@dataclass
class FitReport:
    """The estimate against one GPU."""

    gpu: str
    capacity_bytes: int
    total_bytes: int
    status: str  # fits | tight | out of memory
    longest_seq_length: int | None  # longest max_seq_length (every sequence that long) that fits, as configured otherwise
    largest_batch_size: int | None  # largest per_device_train_batch_size that fits
    levers: list[Lever] = field(default_factory=list)
    suggested: Lever | None = None  # the cheapest single lever, or combination, that fits

    @property
    def headroom_bytes(self) -> int:
        """Capacity left (negative: missing)."""
        return self.capacity_bytes - self.total_bytes


def query_of(request: CalcRequest) -> dict[str, str]:
    """The calculator query string of a request."""
    return calculator_query(request.lora, request.training, model=request.model, model_config=request.hf_config)


def status_of(total: int, capacity: int) -> str:
    """fits, tight (above 90% of the GPU) or out of memory."""
    if total > capacity:
        return "out of memory"
    return "tight" if total > TIGHT * capacity else "fits"


class _Solver:
    """Totals of changed configurations of one model, counting each LoRA configuration once."""

    def __init__(self, arch: Architecture, base: CalcRequest, shape: BatchShape | None):
        self.arch = arch
        self.base = base
        self.shape = shape
        self._counts: dict[str, Any] = {}

    def total(self, request: CalcRequest) -> int:
        """compute()'s memory total for this request."""
        key = request.lora.model_dump_json()
        if key not in self._counts:
            self._counts[key] = count_trainable(request.lora, self.arch)
        shape = self.shape if request is self.base else None  # a measured batch belongs to the configuration it came from
        estimate = estimate_memory(self.arch, self._counts[key], request.training, float(request.lora.lora_dropout),
                                   shape, request.lora.use_dora)
        return estimate.total_bytes

    def largest(self, request: CalcRequest, name: str, low: int, high: int, capacity: int, **fixed: Any) -> int | None:
        """The largest value of a training field in [low, high] whose total fits (totals grow with it)."""
        def fits(value: int) -> bool:
            return self.total(changed(request, training={name: value, **fixed})) <= capacity
        if not fits(low):
            return None
        while low < high:
            middle = (low + high + 1) // 2
            if fits(middle):
                low = middle
            else:
                high = middle - 1
        return low


def changed(request: CalcRequest, *, lora: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> CalcRequest:
    """A copy of the request with some fields replaced, validated again."""
    new_lora = LoraSpec.model_validate(request.lora.model_dump() | lora) if lora else request.lora
    new_training = CalcTrainingSpec.model_validate(request.training.model_dump() | training) if training else request.training
    return request.model_copy(update={"lora": new_lora, "training": new_training})


def _divisors_below(value: int) -> list[int]:
    """Divisors of value smaller than it, largest first: micro-batches that keep the effective batch exact."""
    return [d for d in range(value - 1, 0, -1) if value % d == 0]


def _levers(solver: _Solver, request: CalcRequest, capacity: int, adapted_leaves: tuple[str, ...]) -> list[tuple[str, str, str, str, CalcRequest]]:
    """Candidate levers in the order of what they cost, cheapest first: (key, label, cost, change, request)."""
    lora, training = request.lora, request.training
    levers = []
    if training.optim in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit"):
        levers.append(("optim", "8-bit optimizer", "about the same speed and loss (bitsandbytes' block-wise 8-bit AdamW)",
                       "optim=adamw_8bit", changed(request, training={"optim": "adamw_8bit"})))
    batch = training.per_device_train_batch_size
    if batch > 1:
        options = [changed(request, training={"per_device_train_batch_size": d,
                                              "gradient_accumulation_steps": training.gradient_accumulation_steps * batch // d})
                   for d in _divisors_below(batch)]
        pick = next((option for option in options if solver.total(option) <= capacity), options[-1])
        new = pick.training
        levers.append(("micro_batch", "Smaller micro-batch, more accumulation",
                       "same effective batch and result; each step runs more, smaller passes (slower on a GPU that was full)",
                       f"per_device_train_batch_size={new.per_device_train_batch_size}, "
                       f"gradient_accumulation_steps={new.gradient_accumulation_steps}", pick))
    if not training.gradient_checkpointing:
        levers.append(("checkpointing", "Gradient checkpointing", "about 20-35% slower: each layer's forward runs twice",
                       "gradient_checkpointing=true", changed(request, training={"gradient_checkpointing": True})))
    if training.base_dtype not in ("nf4", "fp4"):
        levers.append(("nf4", "4-bit base weights (QLoRA)",
                       "slower matmuls (dequantising each weight) and a small quality cost",
                       "base_dtype=nf4, bnb_4bit_use_double_quant=true",
                       changed(request, training={"base_dtype": "nf4", "bnb_4bit_use_double_quant": True})))
    width = training.batch_seq_length
    longest = solver.largest(request, "max_seq_length", MIN_SEQ, width - 1, capacity, typical_seq_length=None) if width > MIN_SEQ else None
    if longest is not None:
        levers.append(("seq", "Shorter sequences", "longer examples are truncated: the model learns less of them",
                       f"max_seq_length={longest}",
                       changed(request, training={"max_seq_length": longest, "typical_seq_length": None})))
    if lora.r > 1:
        scale = (lora.r // 2) / lora.r
        alpha = lora.lora_alpha * scale
        levers.append(("r", "Lower r", "a smaller adapter: less capacity to learn (alpha halved too, keeping alpha/r)",
                       f"r={lora.r // 2}, lora_alpha={alpha:g}",
                       changed(request, lora={"r": lora.r // 2, "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha})))
    attention = [leaf for leaf in adapted_leaves if leaf in ATTENTION_LEAVES]
    fewer = attention if len(attention) < len(adapted_leaves) else [leaf for leaf in PAIR if leaf in attention]
    if fewer and len(fewer) < len(adapted_leaves):
        levers.append(("targets", "Fewer target modules", "adapts fewer layers' weights: less capacity to learn",
                       "target_modules=" + ",".join(fewer), changed(request, lora={"target_modules": fewer})))
    return levers


def _combination(solver: _Solver, request: CalcRequest, capacity: int, levers: list[Lever],
                 adapted_leaves: tuple[str, ...]) -> Lever | None:
    """Levers applied one after another, cheapest first, until the total fits; then any not needed dropped again."""
    applied: list[str] = []
    current: CalcRequest | None = request
    for lever in levers:
        new = _replay(solver, current, capacity, [lever.key], adapted_leaves)
        if new is None:
            continue
        current, applied = new, [*applied, lever.key]
        if solver.total(current) <= capacity:
            break
    else:
        return None
    for key in reversed(applied[:-1]):  # keep only what the fit needs
        keys = [k for k in applied if k != key]
        without = _replay(solver, request, capacity, keys, adapted_leaves)
        if without is not None and solver.total(without) <= capacity:
            applied, current = keys, without
    labels = {lever.key: lever for lever in levers}
    total = solver.total(current)
    return Lever("combined", " + ".join(labels[key].label for key in applied), "; ".join(labels[key].cost for key in applied),
                 ", ".join(_change_text(request, current)), current, total, status_of(total, capacity))


def _suggestion(solver: _Solver, request: CalcRequest, capacity: int, levers: list[Lever],
                adapted_leaves: tuple[str, ...]) -> Lever | None:
    """The cheapest way to fit: one lever that trains the same model, else several of them, else the same with the
    levers that train less (shorter sequences, lower r, fewer targets)."""
    same = [lever for lever in levers if lever.key in SAME_RESULT]
    for group in (same, levers):
        single = next((lever for lever in group if lever.status != "out of memory"), None)
        found = single or _combination(solver, request, capacity, group, adapted_leaves)
        if found is not None:
            return found
    return None


def _replay(solver: _Solver, request: CalcRequest, capacity: int, keys: list[str], adapted_leaves: tuple[str, ...]) -> CalcRequest | None:
    """Apply the levers named, in order, each computed on the result of the one before; None if one does not apply."""
    current = request
    for key in keys:
        candidates = {k: new for k, _, _, _, new in _levers(solver, current, capacity, adapted_leaves)}
        if key not in candidates:
            return None
        current = candidates[key]
    return current


def _change_text(before: CalcRequest, after: CalcRequest) -> list[str]:
    """The fields that differ, as name=value text."""
    old, new = query_of(before), query_of(after)
    return [f"{name}={new.get(name, '(default)')}" for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def fit_report(request: CalcRequest, arch: Architecture, adapted_leaves: tuple[str, ...], shape: BatchShape | None = None) -> FitReport | None:
    """The estimate against the GPU the request picks; None when it picks none."""
    capacity = request.training.gpu_bytes
    if capacity is None:
        return None
    solver = _Solver(arch, request, shape)
    total = solver.total(request)
    report = FitReport(
        gpu=request.training.gpu_label or "", capacity_bytes=capacity, total_bytes=total, status=status_of(total, capacity),
        longest_seq_length=solver.largest(request, "max_seq_length", MIN_SEQ, MAX_SEQ, capacity, typical_seq_length=None),
        largest_batch_size=solver.largest(request, "per_device_train_batch_size", 1, MAX_BATCH, capacity),
    )
    if report.status == "fits":
        return report
    for key, label, cost, change, new in _levers(solver, request, capacity, adapted_leaves):
        new_total = solver.total(new)
        report.levers.append(Lever(key, label, cost, change, new, new_total, status_of(new_total, capacity)))
    if report.status == "out of memory":
        report.suggested = _suggestion(solver, request, capacity, report.levers, adapted_leaves)
    return report
