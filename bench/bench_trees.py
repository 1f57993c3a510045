"""Benchmark: a pasted config.json of a new architecture, through the tree service, vs peft's own meta-device count.

Run: .venv/bin/python bench/bench_trees.py [--cached 300]
For each architecture: the first paste with a warm helper (helper builds the tree, the database stores it, the
calculator counts), then cached pastes (p50/p99 of compute), and peft's get_peft_model + get_nb_trainable_parameters
on the meta device in this process; counts must agree. Targets: first paste under 2 s, cached p99 under 5 ms.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.calc import compute  # noqa: E402
from app.jobs.db import init_db, make_engine  # noqa: E402
from app.jobs.trees import TreeService  # noqa: E402
from app.settings import Settings  # noqa: E402

logger = logging.getLogger("bench_trees")
SMALL = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
             num_key_value_heads=4, head_dim=64)
ARCHITECTURES = {
    "olmo2": dict(SMALL, model_type="olmo2"),
    "qwen3_moe": dict(SMALL, model_type="qwen3_moe", num_experts=16, moe_intermediate_size=512),
    "gemma3_text": dict(SMALL, model_type="gemma3_text"),
    "gpt_oss": dict(SMALL, model_type="gpt_oss", num_local_experts=8),
    "t5": dict(model_type="t5", vocab_size=32128, d_model=768, d_ff=2048, num_layers=12, num_heads=12),
}
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at a fraction of the sorted list (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def peft_seconds(config: dict, lora: dict) -> tuple[float, int]:
    """Time of peft's own count on a fresh meta-device model (model build included), and the count."""
    from peft import LoraConfig, get_peft_model

    from app.training.trees import build_model

    started = time.perf_counter()
    model, _ = build_model(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainable, _ = get_peft_model(model, LoraConfig(**lora)).get_nb_trainable_parameters()
    return time.perf_counter() - started, trainable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cached", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("app.jobs.trees").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        engine = make_engine(Settings(var_dir=Path(directory)))
        init_db(engine)
        service = TreeService(engine)
        started = time.perf_counter()
        service.helper.build({"model_type": "llama", **dict(SMALL, num_hidden_layers=1)}, None)
        logger.info("helper start (imports torch, transformers, peft): %.2f s", time.perf_counter() - started)
        for name, config in ARCHITECTURES.items():
            request = {"model_config": config, "lora": LORA}
            started = time.perf_counter()
            first = compute(request, trees=service)
            first_s = time.perf_counter() - started
            samples, cpu = [], []
            for _ in range(args.cached):
                started, started_cpu = time.perf_counter(), time.process_time()
                compute(request, trees=service)
                samples.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            service.memory.clear()
            started = time.perf_counter()
            compute(request, trees=service)
            database_s = time.perf_counter() - started
            peft_s, peft_trainable = peft_seconds(config, LORA)
            p50, p99 = percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3
            cpu_p99 = percentile(cpu, 0.99) * 1e3
            logger.info(
                "%-12s first paste %.2f s (%.2fx of 2 s) | cached p50 %.2f ms p99 %.2f ms (%.2fx of 5 ms), CPU-time p99 %.2f ms | from the "
                "database %.1f ms | peft meta-device %.2f s: cached p50 %.0fx faster | counts %s (%s)",
                name, first_s, first_s / 2, p50, p99, p99 / 5, cpu_p99, database_s * 1e3, peft_s, peft_s * 1e3 / p50,
                "equal" if peft_trainable == first.trainable_params else "DIFFER", f"{first.trainable_params:,}",
            )
        service.close()


if __name__ == "__main__":
    main()
