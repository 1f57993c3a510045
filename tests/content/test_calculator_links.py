"""Calculator links in the content open what they say, and the estimates pages quote are the calculator's today."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import pytest

from app.calc import CalcResult, load_catalogue
from app.settings import PROJECT_ROOT
from app.web.forms import CALCULATOR_FIELD_NAMES, calculator_form

CONTENT = PROJECT_ROOT / "content"
CATALOGUE = load_catalogue()
LINK = re.compile(r"\]\((/calculator\?[^)\s]+)\)")
VIEW_KEYS = {"model", "model_config", "focus"}  # the calculator page's own inputs besides the spec's fields
LINKS = [(str(path.relative_to(CONTENT)), url) for path in sorted(CONTENT.rglob("*.md"))
         for url in LINK.findall(path.read_text())]


def query(url: str) -> dict[str, str]:
    """The link's query string as the calculator page reads it."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def result_of(page: str, link_has: str, changes: dict[str, str] | None = None) -> CalcResult:
    """The calculator's result for the one link on the page containing link_has, with changes applied."""
    (url,) = [url for name, url in LINKS if name == page and link_has in url]
    outcome = calculator_form(query(url) | (changes or {}), CATALOGUE)
    assert not outcome.errors, outcome.errors
    return outcome.result


def part(result: CalcResult, key: str) -> int:
    return next(component.bytes for component in result.memory.components if component.key == key)


def gb(value: int) -> str:
    return f"{value / 1e9:.1f} GB"


def gb2(value: int) -> str:
    return f"{value / 1e9:.2f} GB"


def gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"


def test_content_links_the_calculator():
    assert len(LINKS) >= 20


@pytest.mark.parametrize(("page", "url"), LINKS, ids=[f"{page}:{i}" for i, (page, _) in enumerate(LINKS)])
def test_each_calculator_link_names_real_inputs_and_computes(page, url):
    """A misspelt key (optimizer= for optim=) is silently ignored by the page, so the link shows another run."""
    params = query(url)
    unknown = set(params) - CALCULATOR_FIELD_NAMES - VIEW_KEYS
    assert not unknown, f"{page}: {url} sets {sorted(unknown)}, which the calculator does not read"
    outcome = calculator_form(params, CATALOGUE)
    assert not outcome.errors, f"{page}: {url}: {outcome.errors}"


# (page, a text that picks one of its calculator links, changes to that link's inputs, the phrases the page must
# contain, computed from the calculator's result)
QUOTES: list[tuple[str, str, dict[str, str], Callable[[CalcResult], list[str]]]] = [
    ("guides/quick-start.md", "paged_adamw_8bit", {}, lambda r: [
        f"about {gb(r.memory.total_bytes)}, which the calculator displays as {gib(r.memory.total_bytes)}",
        f"({gb(part(r, 'base_weights'))} of weights", f"{gb(part(r, 'logits'))} logits and loss",
        f"{gb(part(r, 'activations'))} activations"]),
    ("guides/quick-start.md", "paged_adamw_8bit", {"base_dtype": "bf16"}, lambda r: [
        f"estimated at {gb(r.memory.total_bytes)} ({gib(r.memory.total_bytes)}) and does not fit"]
        if r.fit.status == "out of memory" else ["the bf16 run fits a 24 GB card: the page says it does not"]),
    ("guides/where-training-memory-goes.md", "base_dtype=nf4", {}, lambda r: [
        f"estimates the same two runs at {gb(r.memory.total_bytes)} and", f"weights are {gb(part(r, 'base_weights'))}",
        f"logits and loss ({gb2(part(r, 'logits'))})", f"activations {gb2(part(r, 'activations'))} against",
        f"({gb2(part(r, 'allocator'))} and"]),
    ("guides/where-training-memory-goes.md", "base_dtype=bf16", {}, lambda r: [
        f"and {gb(r.memory.total_bytes)}, as nvidia-smi", f"against {gb2(part(r, 'activations'))} in bf16",
        f"and {gb2(part(r, 'allocator'))}) is a quarter"]),
    ("guides/out-of-memory.md", "gradient_checkpointing=false", {}, lambda r: [
        f"[estimated at {gb(part(r, 'activations'))}]"]),
    ("params/per_device_train_batch_size.md", "gradient_checkpointing=false", {}, lambda r: [
        f"about {r.memory.total_bytes / 1e9:.0f} GB without it"]),
    ("params/per_device_train_batch_size.md", "gradient_checkpointing=true", {}, lambda r: [
        f"about {gb(r.memory.total_bytes)}](", f"with it, {r.memory.total_bytes / r.fit.capacity_bytes:.0%} of the card: "
        f"{r.fit.status}"]),
]


@pytest.mark.parametrize(("page", "link_has", "changes", "phrases"), QUOTES,
                         ids=[f"{page}:{link_has}:{changes}" for page, link_has, changes, _ in QUOTES])
def test_quoted_estimates_are_the_calculator_s(page, link_has, changes, phrases):
    """When the memory model changes, this names the sentence to re-read and re-figure."""
    text = " ".join((CONTENT / page).read_text().split())
    missing = [phrase for phrase in phrases(result_of(page, link_has, changes)) if phrase not in text]
    assert not missing, f"{page} no longer quotes the calculator: expected {missing}"


def test_load_in_8bit_quotes_the_base_weights_of_both_framework_kinds():
    text = " ".join((CONTENT / "params" / "load_in_8bit.md").read_text().split())
    base = {"model": "llama-3.1-8b", "r": "16", "target_modules": "all-linear"}
    weights = {}
    for framework in ("litgpt", "transformers"):
        for dtype in ("int8", "bf16", "nf4"):
            outcome = calculator_form(base | {"base_dtype": dtype, "framework": framework}, CATALOGUE)
            weights[framework, dtype] = f"{part(outcome.result, 'base_weights') / 1e9:.2f} GB"
    assert (f"{weights['litgpt', 'int8']} of base weights in int8 against {weights['litgpt', 'bf16']} in bf16 and "
            f"{weights['litgpt', 'nf4']} in NF4") in text
    assert f"{weights['transformers', 'int8']} in int8 and {weights['transformers', 'nf4']} in NF4" in text


def test_merging_guide_quotes_what_a_saved_embedding_adds_to_the_adapter_file():
    text = " ".join((CONTENT / "guides" / "merging-and-serving.md").read_text().split())
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    sizes = [calculator_form({"model": "llama-3.1-8b", "r": "16", "target_modules": ",".join(targets)},
                             CATALOGUE).result.adapter_file_bytes.bf16 for targets in (projections, [*projections, "embed_tokens"])]
    assert f"each adds about {(sizes[1] - sizes[0]) / 1e9:.2f} GB in bf16 to a file of tens of MB" in text
    assert 10e6 <= sizes[0] < 100e6
