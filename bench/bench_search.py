"""Benchmark: search over the whole library, the SQLite FTS5 engine vs the hand-written index it replaced.

Run: .venv/bin/python bench/bench_search.py [--rounds 20] [--ranks]
Times every query of tests/content/test_search_queries.py (plus typing prefixes of each) on both
engines over the same pages and prints p50/p99 per query with their ratio to the 10 ms p99 target.
The old engine is read from git history (app/content/search.py at OLD_ENGINE_COMMIT), so the two
run side by side in one process; without git only the new engine is timed.
--ranks prints, for every query, the rank of each page it must find: old engine on the content of
OLD_ENGINE_COMMIT, old engine on today's content, and the new engine.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.content.library import load_library  # noqa: E402
from tests.content.test_search_queries import QUERIES  # noqa: E402

logger = logging.getLogger("bench_search")
OLD_ENGINE_COMMIT = "dc480df"  # the last commit with the hand-written inverted index
TARGET_P99_SECONDS = 0.010


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at a fraction of the sorted list (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def git_show(path: str) -> str | None:
    """A file's text at OLD_ENGINE_COMMIT, or None when git or the commit is not there."""
    try:
        return subprocess.run(["git", "show", f"{OLD_ENGINE_COMMIT}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def old_engine():
    """The old app/content/search.py as a module of its own, or None."""
    source = git_show("app/content/search.py")
    if source is None:
        return None
    spec = importlib.util.spec_from_loader("old_search", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_search"] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{OLD_ENGINE_COMMIT}:app/content/search.py", "exec"), module.__dict__)  # noqa: S102
    return module


def old_content(folder: Path) -> Path | None:
    """The content folder of OLD_ENGINE_COMMIT, written under `folder`, or None."""
    try:
        listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", OLD_ENGINE_COMMIT, "content/params", "content/guides"],
                                 cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    for path in listing:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(git_show(path) or "", encoding="utf-8")
    return folder / "content"


def typed_queries() -> list[str]:
    """Every table query, and each query as typed so far at every third character (search as you type)."""
    queries = []
    for _, query, _ in QUERIES:
        queries.extend(query[:end] for end in range(3, len(query), 3))
        queries.append(query)
    return queries


def time_engines(engines: dict, queries: list[str], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per search call, per engine, the engines taking turns on each query so that both
    meet the same load from other processes; after one warm-up pass."""
    for index in engines.values():
        for query in queries:
            index.search(query)
    samples = {name: {"wall": [], "cpu": []} for name in engines}
    for round_number in range(rounds):
        for query in queries:
            names = list(engines) if round_number % 2 == 0 else list(reversed(engines))
            for name in names:
                wall, cpu = time.perf_counter(), time.thread_time()
                engines[name].search(query)
                samples[name]["cpu"].append(time.thread_time() - cpu)
                samples[name]["wall"].append(time.perf_counter() - wall)
    return samples


def rank_of(hits, url: str) -> str:
    """1-based rank of `url` among the hits, or '-' when absent."""
    urls = [hit.page.url for hit in hits]
    return str(urls.index(url) + 1) if url in urls else "-"


def report_ranks(library, old) -> None:
    """For each query and page it must find: rank before (old engine, old content), old engine today, new engine."""
    with tempfile.TemporaryDirectory() as folder:
        before_content = old_content(Path(folder)) if old else None
        before_library = load_library(before_content) if before_content else None
    before = old.SearchIndex.build([*before_library.params.values(), *before_library.guides.values()]) if before_library else None
    old_today = old.SearchIndex.build([*library.params.values(), *library.guides.values()]) if old else None
    logger.info("| kind | query | page | old engine, old content | old engine, new content | new engine |")
    logger.info("|---|---|---|---|---|---|")
    for kind, query, expected in QUERIES:
        results = [engine.search(query) if engine else [] for engine in (before, old_today, library.index)]
        for url in expected:
            logger.info("| %s | `%s` | %s | %s | %s | %s |", kind, query.replace("|", "\\|"), url, *(rank_of(hits, url) for hits in results))


def main() -> None:
    """Time both engines side by side and print p50, p99 and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ranks", action="store_true", help="print the before/after rank table instead of timing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    library = load_library(ROOT / "content")
    old = old_engine()
    if args.ranks:
        report_ranks(library, old)
        return
    logger.info("load average before: %.1f %.1f %.1f on %d CPUs (other processes inflate p99)", *os.getloadavg(), os.cpu_count())
    pages = [*library.params.values(), *library.guides.values()]
    queries = typed_queries()
    logger.info("library: %d pages; %d queries (table queries and their typed prefixes) x %d rounds", len(pages), len(queries), args.rounds)
    engines = {"new (FTS5)": library.index}
    logger.info("new engine built with the library (load_library, including rendering)")
    if old:
        start = time.perf_counter()
        engines["old (hand-written)"] = old.SearchIndex.build(pages)
        logger.info("old engine index built in %.1f ms", (time.perf_counter() - start) * 1000)
    else:
        logger.info("old engine not available (no git history): timing the new engine only")
    samples = time_engines(engines, queries, args.rounds)
    logger.info("%-20s %12s %12s %12s %12s %14s", "engine", "wall p50 ms", "wall p99 ms", "wall max ms", "cpu p99 ms",
                "p99 / target")
    figures = {}
    for name, measured in samples.items():
        wall, cpu = measured["wall"], measured["cpu"]
        figures[name] = (percentile(wall, 0.5), percentile(wall, 0.99))
        logger.info("%-20s %12.3f %12.3f %12.3f %12.3f %13.2fx", name, figures[name][0] * 1000, figures[name][1] * 1000,
                    max(wall) * 1000, percentile(cpu, 0.99) * 1000, figures[name][1] / TARGET_P99_SECONDS)
    if len(figures) == 2:
        (new_p50, new_p99), (old_p50, old_p99) = figures.values()
        logger.info("new/old: p50 %.2fx, p99 %.2fx (above 1 means the new engine is slower)", new_p50 / old_p50, new_p99 / old_p99)
    logger.info("load average after: %.1f %.1f %.1f", *os.getloadavg())


if __name__ == "__main__":
    main()
