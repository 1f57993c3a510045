"""Serving lints: what vLLM and merging do with the adapter this configuration produces, each with its source."""

from __future__ import annotations

from typing import Callable

from app.calc.architecture import CONV1D, LINEAR
from app.calc.trainable import ParamCount
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

# vLLM's accepted --max-lora-rank values and its default (LoRAConfig.max_lora_rank: MaxLoRARanks = 16).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
VLLM_LORA_BUFFER_BYTES = 2  # lora_dtype "auto" is the model's dtype: 16-bit for a bf16/fp16 deployment
VLLM_CONFIG_SOURCE = ("vLLM vllm/config/lora.py at commit a78dc92 (MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, "
                      "256, 320, 512]; max_lora_rank = 16)")
VLLM_BUFFERS_SOURCE = ("vLLM vllm/lora/layers/base_linear.py at commit 1ace43e (create_lora_weights: torch.zeros "
                       "(max_loras, 1, max_lora_rank, input_size) and (max_loras, 1, output_size, max_lora_rank))")
VLLM_LOADER_SOURCE = "vLLM vllm/lora/peft_helper.py at commit e745baf (PEFTHelper._validate_features, validate_legal)"
VLLM_TOWER_SOURCE = "vLLM vllm/config/lora.py at commit a78dc92 (enable_tower_connector_lora, default False)"
QLORA_MERGE_SOURCE = ("peft 0.21.2 tuners/lora/bnb.py (merge warns 'may get different generations due to rounding "
                      "errors'); huggingface/peft issues #2321 and #2105; unslothai/unsloth-zoo PR #810")
# Module-name segments of a multimodal model's vision side (Gemma 3, LLaVA, Mllama, Qwen-VL).
VISION_SEGMENTS = frozenset({"vision_tower", "vision_model", "visual", "vision_encoder", "image_encoder",
                             "multi_modal_projector"})

Add = Callable[..., None]


def vision_modules(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names that lie inside a vision tower or its projector."""
    return [name for name in names if VISION_SEGMENTS.intersection(name.split("."))]


def vllm_rank_needed(rank: int) -> int | None:
    """The smallest --max-lora-rank vLLM accepts that serves this rank; None above the largest."""
    return next((value for value in VLLM_MAX_LORA_RANKS if value >= rank), None)


def vllm_buffer_bytes(count: ParamCount, max_lora_rank: int, max_loras: int = 1) -> int:
    """Bytes of vLLM's preallocated A and B buffers for the Linear modules this adapter adapts."""
    width = sum(item.in_features + item.out_features for item in count.adapted if item.kind in (LINEAR, CONV1D))
    return width * max_lora_rank * max_loras * VLLM_LORA_BUFFER_BYTES


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB" if size < 2**30 else f"{size / 2**30:,.2f} GiB"


def serving_lints(spec: LoraSpec, training: CalcTrainingSpec, count: ParamCount, add: Add) -> None:
    """vLLM's rank limit and what it costs, adapters vLLM's loader refuses, and merging a QLoRA adapter."""
    _rank_lint(count, spec, add)
    if spec.use_dora:
        add("vllm_dora", "info", "use_dora",
            "vLLM refuses a DoRA adapter when loading it (\"vLLM does not yet support DoRA.\"): merge it into the base "
            "(merge_and_unload) to serve this model with vLLM.", "use_dora", VLLM_LOADER_SOURCE)
    saved = [name for name, _ in count.saved_modules]
    if spec.modules_to_save or saved:
        listed = ", ".join(saved[:3]) if saved else ", ".join(spec.modules_to_save or ())
        add("vllm_modules_to_save", "info", "modules_to_save",
            f"The adapter will carry full copies in modules_to_save ({listed}); vLLM's loader accepts only "
            "modules_to_save = None (\"vLLM only supports modules_to_save being None.\"), so merge the adapter to "
            "serve it with vLLM.", "modules_to_save", VLLM_LOADER_SOURCE)
    if spec.bias != "none":
        add("vllm_bias", "info", "bias",
            f'bias="{spec.bias}": vLLM\'s loader refuses an adapter with bias other than "none" unless the server '
            "enables LoRA bias (\"Adapter bias cannot be used without bias_enabled.\"); the later LoRAConfig at "
            "commit a78dc92 has no such option. Merge to be safe.", "bias",
            VLLM_LOADER_SOURCE + "; " + VLLM_CONFIG_SOURCE)
    if count.resolved.target_parameters:
        add("vllm_target_parameters", "info", "target_parameters",
            "This adapter adapts 3-D parameters (target_parameters: "
            f"{', '.join(sorted(count.resolved.target_parameters)[:3])}). vLLM's loader has no target_parameters "
            "field and drops keys it does not know, so its checks say nothing about these expert adapters: test "
            "them on vLLM, or merge, before relying on them.", "target_parameters", VLLM_LOADER_SOURCE)
    tower = vision_modules([item.name for item in count.adapted])
    if tower:
        add("vllm_vision_tower", "info", "target_modules",
            f"{len(tower)} adapted modules lie in the vision tower or projector; vLLM applies LoRA there only with "
            "enable_tower_connector_lora=True, which is off by default and experimental (its docstring names the "
            "Qwen VL series).", "target_modules", VLLM_TOWER_SOURCE)
    if training.quantized:
        add("qlora_merge", "info", "base_dtype",
            "Merging a QLoRA adapter: the adapter learned against the dequantised 4-/8-bit weights, not the original "
            "16-bit ones, so the merged numbers depend on the base you merge into. Merging into the quantised layers "
            "requantises (peft warns of rounding errors); merging into the original 16-bit checkpoint adds the "
            "quantisation error the adapter never saw. To keep what was trained, load the base quantised, "
            "dequantise it (model.dequantize()), then merge_and_unload() and save in 16 bit.",
            "load_in_4bit", QLORA_MERGE_SOURCE)


def _rank_lint(count: ParamCount, spec: LoraSpec, add: Add) -> None:
    rank = max((item.r for item in count.adapted), default=spec.r)
    needed = vllm_rank_needed(rank)
    accepted = ", ".join(map(str, VLLM_MAX_LORA_RANKS))
    if needed is None:
        add("vllm_rank_too_high", "warning", "r",
            f"The largest rank here ({rank}) is above 512, the highest --max-lora-rank vLLM accepts ({accepted}): "
            "vLLM cannot serve this adapter unmerged.", "r", VLLM_CONFIG_SOURCE)
        return
    if needed <= VLLM_DEFAULT_MAX_LORA_RANK:
        return
    cost, top = vllm_buffer_bytes(count, needed), vllm_buffer_bytes(count, VLLM_MAX_LORA_RANKS[-1])
    add("vllm_max_lora_rank", "info", "r",
        f"To serve this adapter (largest rank {rank}) vLLM needs --max-lora-rank {needed} or more; its default "
        f"{VLLM_DEFAULT_MAX_LORA_RANK} refuses it (accepted values: {accepted}). The setting costs memory whether "
        "adapters use it or not: vLLM preallocates zeroed A and B buffers of max_loras x max_lora_rank x (in + out) "
        f"for each LoRA layer. For the modules adapted here that is about {_mib(cost)} per --max-loras slot at "
        f"{needed} in 16 bit, {_mib(top)} at 512 (estimated from the buffer shapes); set it to your largest rank, "
        "no higher.", "r", VLLM_CONFIG_SOURCE + "; " + VLLM_BUFFERS_SOURCE)
