"""Measure the memory model's CUDA-only rules on a GPU and print predicted against measured.

The calculator marks these rules "not measured on a GPU yet" (app/calc/memory.py, NOT_MEASURED_ON_GPU):
- the CUDA context, cuBLAS workspace and kernels (FRAMEWORK_BYTES);
- the caching allocator's slack per byte of the tensors a step allocates and frees (FRAGMENTATION);
- what CUDA's SDPA kernels keep for the backward pass, and CUDA's fused dropout mask (the activations);
- bitsandbytes' 4-bit layout (when bitsandbytes is installed);
and, as a whole, the peak of one SmolLM2 LoRA training step in bf16 (allocated and reserved).

    .venv/bin/python bench/device_check.py [--model smollm2-135m-instruct] [--batch 4] [--seq 256]

On a machine without CUDA it says so and exits 0. `--cpu-rehearsal` runs the same code on CPU with
tiny-llama, to check the script itself where no GPU is lent (its figures mean nothing for the rules).
"""

from __future__ import annotations

import argparse
import sys

import torch

MIB = 1024**2
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}


def context_bytes(device: torch.device) -> int:
    """Device memory in use after CUDA and cuBLAS start, less what torch's allocator holds."""
    torch.cuda.init()
    a = torch.randn(1024, 1024, device=device, dtype=torch.bfloat16)
    (a @ a).sum().item()  # starts cuBLAS and its workspace
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info(device)
    return total - free - torch.cuda.memory_reserved(device)


def prediction(model_id: str, batch: int, seq: int, dtype: str, dropout: float):
    """The calculator's memory estimate and its activation model for this shape."""
    from app.calc import compute
    from app.calc.catalogue import load_catalogue
    from app.calc.memory import estimate_activations
    from app.spec.lora import LoraSpec
    from app.calc.trainable import count_trainable
    from app.spec.training import CalcTrainingSpec

    training = {"per_device_train_batch_size": batch, "max_seq_length": seq, "base_dtype": dtype, "optim": "adamw_torch"}
    lora = {**LORA, "lora_dropout": dropout}
    result = compute({"model": model_id, "lora": lora, "training": training})
    arch = load_catalogue().get(model_id).architecture
    spec = LoraSpec(**lora)
    saved = estimate_activations(arch, count_trainable(spec, arch), CalcTrainingSpec(**training), dropout)
    return result.memory, saved


def saved_bytes(model, input_ids: torch.Tensor) -> int:
    """Bytes autograd keeps after a forward pass with the loss over every token (parameters left out)."""
    params = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(input_ids=input_ids, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), input_ids.flatten())
    del loss, logits
    return sum(storages.values())


def lora_model(model_id: str, dropout: float, device: torch.device):
    """The catalogue model on `device`, LoRA-wrapped as the calculator's prediction assumes."""
    from peft import LoraConfig, get_peft_model

    from app.settings import get_settings
    from app.training.loading import load_model

    torch.manual_seed(0)
    loaded = load_model(model_id, get_settings(), seed=0)
    model = get_peft_model(loaded.model, LoraConfig(task_type="CAUSAL_LM", lora_dropout=dropout, **LORA))
    return model.to(device), loaded.model.config.vocab_size


def step_peaks(model, input_ids: torch.Tensor, device: torch.device) -> tuple[int, int, int]:
    """(max allocated, max reserved, allocated between steps) over two AdamW steps, the second with its states."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        logits = model(input_ids=input_ids, use_cache=False).logits
        torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), input_ids.flatten()).backward()
        del logits
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type != "cuda":
        return 0, 0, 0
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device),
            torch.cuda.memory_allocated(device))


def nf4_weight_bytes(model_id: str) -> int | None:
    """Base weight bytes of the model loaded in 4-bit NF4 (None without bitsandbytes)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return None
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from app.settings import get_settings
    from app.training.loading import prepare_smollm2

    path = prepare_smollm2(get_settings())
    quantised = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"), dtype=torch.bfloat16)
    return quantised.get_memory_footprint()


def row(rule: str, predicted: float, measured: float | None, unit: str = "MiB") -> str:
    """One printed comparison."""
    shape = ",.1f" if unit else ".3f"  # fractions need more places than MiB
    if measured is None:
        return f"{rule:<52} {predicted:>10{shape}} {unit:<3} {'skipped':>14}"
    ratio = measured / predicted if predicted else float("nan")
    return f"{rule:<52} {predicted:>10{shape}} {unit:<3} {measured:>10{shape}} {unit:<3} {ratio:>7.2f}"


def main() -> int:
    """Measure each CUDA-only rule; print predicted, measured and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--cpu-rehearsal", action="store_true", help="run the script's code on CPU with tiny-llama")
    args = parser.parse_args()
    if args.cpu_rehearsal:
        device, dtype, model_id = torch.device("cpu"), "fp32", "tiny-llama"
    elif not torch.cuda.is_available():
        print("device_check: no CUDA device here (torch.cuda.is_available() is False); nothing to measure. "
              "Run it where a GPU is lent; --cpu-rehearsal checks the script on CPU.")
        return 0
    elif not torch.cuda.is_bf16_supported():
        print("device_check: this GPU has no bf16, which the worker (and so the calculator's CUDA rules) assume.")
        return 0
    else:
        device, dtype, model_id = torch.device("cuda"), "bf16", args.model

    from app.calc.memory import FRAGMENTATION, FRAMEWORK_BYTES

    print(f"{model_id} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, {dtype}, "
          f"LoRA {LORA}, batch {args.batch} x {args.seq} tokens, torch {torch.__version__}")
    print(f"{'rule':<52} {'predicted':>14} {'measured':>14} {'meas/pred':>7}")
    context = context_bytes(device) if device.type == "cuda" else None
    print(row("CUDA context + cuBLAS workspace", FRAMEWORK_BYTES / MIB, None if context is None else context / MIB))

    saved = {}
    for dropout in (0.0, 0.1):
        memory, estimate = prediction(model_id, args.batch, args.seq, dtype, dropout)
        model, vocab = lora_model(model_id, dropout, device)
        model.train()
        input_ids = torch.randint(0, vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
        saved[dropout] = (estimate.activations + estimate.logits_saved, saved_bytes(model, input_ids))
        label = f"saved for backward (SDPA{', dropout 0.1' if dropout else ''})"
        print(row(label, saved[dropout][0] / MIB, saved[dropout][1] / MIB))
        if dropout == 0.0:
            allocated, reserved, held = step_peaks(model, input_ids, device)
            slack = (reserved - allocated) / (allocated - held) if allocated else None
            measured = (allocated / MIB, reserved / MIB) if allocated else (None, None)
            print(row("peak allocated, one training step (live tensors)", memory.allocated_bytes / MIB, measured[0]))
            print(row("peak reserved (live tensors + allocator slack)", memory.reserved_bytes / MIB, measured[1]))
            print(row("allocator slack per byte a step allocates and frees", FRAGMENTATION, slack, unit=""))
            if context is not None:
                print(row("whole device: context + reserved (calculator total)", memory.total_bytes / MIB,
                          (context + reserved) / MIB))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    mask_predicted = saved[0.1][0] - saved[0.0][0]
    print(row("dropout 0.1 adds (fused mask + dropped copies)", mask_predicted / MIB, (saved[0.1][1] - saved[0.0][1]) / MIB))

    if device.type == "cuda":
        memory, _ = prediction(model_id, args.batch, args.seq, "nf4", 0.0)
        weights = next(part.bytes for part in memory.components if part.key == "base_weights")
        nf4 = nf4_weight_bytes(model_id) if model_id == "smollm2-135m-instruct" else None
        print(row("NF4 base weights (bitsandbytes)", weights / MIB, None if nf4 is None else nf4 / MIB))
    return 0


if __name__ == "__main__":
    sys.exit(main())
