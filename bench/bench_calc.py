"""Benchmark: app.calc on the largest catalogue model vs peft's own count on the meta device.

Run: .venv/bin/python bench/bench_calc.py [--iterations 500] [--peft-runs 3]
Prints p50/p99 per call of app.calc.compute and of count_trainable alone, the time of
get_peft_model + get_nb_trainable_parameters on a meta-device model, their ratio, and that both counts agree.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.calc import compute, load_catalogue  # noqa: E402
from app.spec.lora import LoraSpec  # noqa: E402
from app.calc.trainable import count_trainable  # noqa: E402

logger = logging.getLogger("bench_calc")
CONFIGS = {
    "q,v r=16": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
    "all-linear r=64 DoRA": {"r": 64, "lora_alpha": 128, "target_modules": "all-linear", "use_dora": True},
    "7 projections + rank_pattern": {
        "r": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "rank_pattern": {"down_proj": 8, r"model\.layers\.0\..*": 4},
    },
}


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at a fraction of the sorted list (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def time_calls(function, iterations: int) -> list[float]:
    """Seconds per call, after a warm-up call."""
    function()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def peft_meta_count(config: dict, lora: dict) -> tuple[int, float]:
    """peft's count and the seconds it took: build on the meta device, get_peft_model, count."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    start = time.perf_counter()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainable, _ = get_peft_model(model, LoraConfig(**lora)).get_nb_trainable_parameters()
    return trainable, time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--peft-runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    logger.info("load average before: %.1f %.1f %.1f on %d CPUs (other processes inflate p99)", *os.getloadavg(), os.cpu_count())
    catalogue = load_catalogue()
    largest = max(catalogue.models, key=lambda model: model.architecture.base_params)
    arch = largest.architecture
    logger.info("model: %s (%s parameters, %d modules)", largest.id, f"{arch.base_params:,}", len(arch.modules))
    logger.info("%-30s %10s %10s %12s %12s %12s %9s %s", "config", "calc p50", "calc p99", "count p50", "peft meta",
                "ratio p50", "", "counts")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for name, lora in CONFIGS.items():
        request = {"model": largest.id, "lora": lora}
        full = time_calls(lambda: compute(request, catalogue), args.iterations)
        spec = LoraSpec(**lora)
        core = time_calls(lambda: count_trainable(spec, arch), args.iterations)
        peft_times, peft_count = [], None
        for _ in range(args.peft_runs):
            peft_count, seconds = peft_meta_count(largest.config, lora)
            peft_times.append(seconds)
        ours = compute(request, catalogue).trainable_params
        p50 = percentile(full, 0.5)
        logger.info(
            "%-30s %8.3f ms %8.3f ms %10.3f ms %10.0f ms %11.0fx %9s %s",
            name, p50 * 1e3, percentile(full, 0.99) * 1e3, percentile(core, 0.5) * 1e3,
            statistics.median(peft_times) * 1e3, statistics.median(peft_times) / p50, "",
            "equal" if ours == peft_count else f"DIFFER {ours} vs {peft_count}",
        )
    logger.info("calc = app.calc.compute (counts, memory, lints); count = count_trainable alone; "
                "peft meta = meta-device model + get_peft_model + get_nb_trainable_parameters (imports excluded).")


if __name__ == "__main__":
    main()
