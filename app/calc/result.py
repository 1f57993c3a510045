"""CalcResult: everything the calculator shows, as one serialisable model (the body of POST /api/calc)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    """The model the numbers are for."""

    id: str | None = Field(description="Catalogue id, or null for a pasted config.json.")
    name: str
    hf_id: str | None = None
    model_type: str
    family: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    tie_word_embeddings: bool
    notes: list[str] = Field(default_factory=list)


class ModuleRow(BaseModel):
    """Adapted modules grouped by name within a layer, shape and (r, alpha)."""

    name: str = Field(description="Name below the layer index (self_attn.q_proj), or the full name outside layers.")
    kind: str = Field(description="linear, conv1d, embedding or parameter (lora.ParamWrapper).")
    in_features: int
    out_features: int
    experts: int = Field(1, description="Experts sharing one 3-D parameter (MoE); 1 otherwise.")
    count: int = Field(description="How many modules of this row are adapted.")
    layers: list[int] = Field(description="Layer indices of those modules (empty outside the decoder layers).")
    r: int
    alpha: float
    scaling: float = Field(description="alpha/r, or alpha/sqrt(r) with use_rslora.")
    params_each: int = Field(description="Trainable parameters one module adds.")
    params: int = Field(description="params_each x count.")


class SavedModule(BaseModel):
    """A modules_to_save copy."""

    name: str
    params: int


class MemoryComponent(BaseModel):
    """One part of the memory estimate."""

    key: str
    label: str
    bytes: int
    detail: str
    not_measured_on_gpu: list[str] = Field(
        default_factory=list, description="CUDA-only rules this figure rests on that no GPU run has measured yet.")


class MemoryResult(BaseModel):
    """Per-device training memory, estimated, with what each total predicts."""

    components: list[MemoryComponent]
    total_bytes: int = Field(description="What nvidia-smi shows at the peak: reserved_bytes + the CUDA context (CPU: peak RSS).")
    allocated_bytes: int = Field(description="Predicts torch.cuda.max_memory_allocated: the live tensors at the peak.")
    reserved_bytes: int = Field(description="Predicts torch.cuda.max_memory_reserved: allocated + the caching allocator's slack.")
    basis: str = Field(description="What total_bytes predicts, in words.")
    assumptions: list[str]
    sources: list[str]
    approximate: str = Field("", description="Why this estimate is rougher than usual (an encoder, seq2seq or "
                                             "multimodal model); empty for a decoder-only language model.")


class LeverResult(BaseModel):
    """One change that lowers memory, with the total it leads to and the calculator query that applies it."""

    key: str
    label: str
    cost: str = Field(description="What it costs in speed, or in what is trained.")
    change: str = Field(description="The fields it changes, as name=value.")
    total_bytes: int = Field(description="The memory total after the change (same basis as memory.total_bytes).")
    status: str = Field(description="fits, tight or out of memory.")
    query: dict[str, str] = Field(description="Query parameters of /calculator with the change applied.")


class FitResult(BaseModel):
    """The estimate against the picked GPU (per device; data parallel keeps a whole copy on each)."""

    gpu: str
    capacity_bytes: int = Field(description="The GPU's total memory as the driver reports it.")
    total_bytes: int
    headroom_bytes: int = Field(description="capacity_bytes - total_bytes; negative when it does not fit.")
    status: str = Field(description="fits (at most 90% of the GPU), tight (90-100%) or out of memory.")
    longest_seq_length: int | None = Field(description="Longest max_seq_length that fits with every sequence that long; null: none.")
    largest_batch_size: int | None = Field(description="Largest per_device_train_batch_size that fits; null: not even 1.")
    levers: list[LeverResult] = Field(description="Changes that lower memory, cheapest first (empty when it fits).")
    suggested: LeverResult | None = Field(description="The cheapest single lever or combination that fits, when it does not.")


class LintResult(BaseModel):
    """Advice about the configuration."""

    code: str
    severity: str = Field(description="warning or info.")
    field: str = Field(description="The form field (and LoraConfig / TrainingArguments name) it concerns.")
    message: str
    page: str = Field(description="Slug of the encyclopedia page: /params/<page>.")
    source: str = Field("", description="Where the rule comes from (a library file and version, an issue); empty for "
                                          "peft's own behaviour, which the page cites.")


class ScalingSummary(BaseModel):
    """How the LoRA update is scaled."""

    rule: str = Field(description="alpha/r or alpha/sqrt(r).")
    values: list[float] = Field(description="Distinct scalings across adapted modules (patterns can differ).")


class TrainingSummary(BaseModel):
    """Derived training quantities."""

    effective_batch_size: int = Field(description="per_device_train_batch_size x gradient_accumulation_steps x devices.")
    tokens_per_step: int = Field(description="effective_batch_size x max_seq_length (upper bound with padding).")


class AdapterFileSize(BaseModel):
    """Size of adapter_model.safetensors."""

    fp32: int
    bf16: int
    tensors: int = Field(description="Tensors saved in the file.")


class CalcResult(BaseModel):
    """Exact parameter counts (equal to peft's), scaling, a memory estimate and lints."""

    model: ModelInfo
    trainable_params: int = Field(description="Equal to PeftModel.get_nb_trainable_parameters()[0].")
    base_params: int = Field(description="Parameters of the base model, tied tensors once.")
    all_params: int = Field(description="Equal to get_nb_trainable_parameters()[1]: base + adapters + copies.")
    trainable_percent: float = Field(description="100 x trainable_params / all_params, as peft prints it.")
    adapter_file_bytes: AdapterFileSize
    scaling: ScalingSummary
    modules: list[ModuleRow]
    saved_modules: list[SavedModule]
    trainable_bias_params: int
    resolved_target_modules: list[str] | str | None = Field(description="target_modules as peft holds them after defaults and rewrites.")
    resolved_target_parameters: list[str]
    memory: MemoryResult
    fit: FitResult | None = Field(None, description="Against the picked GPU (training.gpu); null when none is picked.")
    training: TrainingSummary
    lints: list[LintResult]
    lora: dict[str, Any] = Field(description="The LoRA settings used, defaults filled in.")
