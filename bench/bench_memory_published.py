"""The calculator's memory estimate against published, measured GPU peaks (bench/data/published_memory.json).

Each case names its source, conditions and basis (allocated, reserved or nvidia-smi); the calculator's figure on
the same basis is compared with it. Prints predicted/published per case, and the median and worst over the
trustworthy cases (target: median within 0.95-1.05, every trustworthy case within 0.85-1.15). Then the published
"longest that fit" tables: the predicted total at the published length over the card (target 0.9-1.0: it just fits)
and the longest length the calculator's fit solver says fits on that card. Last, the caching allocator's slack read
from published runs that give the peak allocated, the allocation between steps and the nvidia-smi peak, against the
calculator's rule (FRAGMENTATION of the bytes a step allocates and frees).

    .venv/bin/python bench/bench_memory_published.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from app.calc import compute, load_catalogue
from app.calc.memory import FRAGMENTATION, FRAMEWORK_BYTES, fitted_slack
from app.training.trees import InProcessTrees

TREES = InProcessTrees()  # pasted configs (published models outside the catalogue) are built here, on the meta device

DATA = Path(__file__).parent / "data" / "published_memory.json"
UNITS = {"GB": 10**9, "GiB": 2**30, "MiB": 2**20}
BASIS = {"allocated": "allocated_bytes", "reserved": "reserved_bytes", "nvidia-smi": "total_bytes"}


def request_of(case: dict, catalogue) -> dict:
    """The case's calculator request; a catalogue model with config_overrides becomes a pasted config.json."""
    request = dict(case["request"])
    if "config_overrides" in case:
        config = dict(catalogue.get(request.pop("model")).config) | case["config_overrides"]
        request["model_config"] = config
    return request


def main() -> None:
    """Print predicted/published for every case, then the summary over the trustworthy ones."""
    catalogue = load_catalogue()
    cases = json.loads(DATA.read_text())["cases"]
    print(f"{'case':<28} {'basis':<10} {'published':>10} {'predicted':>10} {'pred/pub':>8}  trustworthy")
    ratios = []
    for case in cases:
        memory = compute(request_of(case, catalogue), catalogue, trees=TREES).memory
        predicted = getattr(memory, BASIS[case["basis"]])
        published = case["published"] * UNITS[case["unit"]]
        ratio = predicted / published
        if case["trustworthy"]:
            ratios.append(ratio)
        unit = UNITS[case["unit"]]
        label = case["unit"]
        print(f"{case['id']:<28} {case['basis']:<10} {published / unit:>7.2f} {label:<3}"
              f"{predicted / unit:>7.2f} {label:<3}{ratio:>7.2f}  {'yes' if case['trustworthy'] else 'no: ' + case['why_not'][:60]}")
    worst = max(ratios, key=lambda value: abs(value - 1))
    print(f"\ntrustworthy cases: {len(ratios)}; median predicted/published {statistics.median(ratios):.3f} "
          f"(target 0.95-1.05); worst {worst:.3f} (target 0.85-1.15); "
          f"within ±15%: {sum(0.85 <= value <= 1.15 for value in ratios)}/{len(ratios)}")
    data = json.loads(DATA.read_text())
    longest_fit(data["longest_fit"], catalogue)
    allocator_slack(data["allocator_slack"]["runs"])


def longest_fit(cases: list[dict], catalogue) -> None:
    """Predicted total at each published longest length over the card, and the calculator's own longest."""
    print(f"\n{'longest that fit':<44} {'card':>6} {'published':>10} {'predicted':>10} {'pred/card':>9} {'longest':>9} {'/published':>10}")
    ratios = []
    for case in cases:
        card = case["card_gb"] * UNITS["GiB"]
        request = request_of(case, catalogue)
        request["training"] = request["training"] | {"gpu": "custom", "gpu_memory_gib": case["card_gb"]}
        result = compute(request, catalogue, trees=TREES)
        ratio = result.memory.total_bytes / card
        ratios.append(ratio)
        longest = result.fit.longest_seq_length if result.fit else None
        shown = f"{longest:>9,}" if longest else f"{'none':>9}"
        relative = f"{longest / case['published_length']:>10.2f}" if longest else f"{'-':>10}"
        print(f"{case['id']:<44} {case['card_gb']:>3} GB {case['published_length']:>10,} "
              f"{result.memory.total_bytes / UNITS['GiB']:>6.2f} GiB {ratio:>9.3f} {shown} {relative}")
    print(f"\nlongest-that-fit rows: {len(ratios)}; predicted total / card: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f}; within 0.90-1.00: {sum(0.9 <= value <= 1.0 for value in ratios)}/{len(ratios)}")


def slack_run(run: dict) -> tuple[int, int, int]:
    """(peak allocated, allocated between steps, nvidia-smi bytes) of one recorded run."""
    return run["peak_allocated_bytes"], run["end_allocated_bytes"], int(run["nvidia_smi_mib"] * UNITS["MiB"])


def allocator_slack(runs: list[dict]) -> None:
    """Each run's reserved-but-unused bytes per byte of short-lived tensors, and the rule's nvidia-smi figure from them."""
    print(f"\n{'allocator slack (published runs)':<60} {'batch':>5} {'slack':>6} {'rule smi/published':>18}")
    fractions, ratios = [], []
    for run in runs:
        peak, held, smi = slack_run(run)
        fractions.append(fitted_slack([(peak, held, smi)]))
        ratios.append((peak + FRAGMENTATION * (peak - held) + FRAMEWORK_BYTES) / smi)
        print(f"{run['model'] + ' ' + run['framework_config']:<60} {run['per_device_train_batch_size']:>5} "
              f"{fractions[-1]:>6.3f} {ratios[-1]:>18.3f}")
    print(f"\nruns: {len(runs)}; slack per short-lived byte: median {statistics.median(fractions):.3f}, least squares "
          f"{fitted_slack([slack_run(run) for run in runs]):.3f}, range {min(fractions):.3f}-{max(fractions):.3f}; the calculator uses {FRAGMENTATION}. "
          f"Rule's nvidia-smi figure / published: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
