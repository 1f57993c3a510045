"""What people type, and the pages that must come up in the first three results for it."""

from __future__ import annotations

import pytest

from app.content.library import load_library
from app.settings import Settings

OOM = "/guides/out-of-memory"
FLAT = "/guides/loss-not-decreasing"
NAN = "/guides/loss-nan-or-exploding"
OVERFIT = "/guides/overfitting"
FORGET = "/guides/forgetting"
NO_EFFECT = "/guides/adapter-has-no-effect"
SLOW = "/guides/training-too-slow"
GARBAGE = "/guides/repetitive-or-garbage-output"

# (kind, query, pages that must all be among the first three results)
QUERIES: list[tuple[str, str, tuple[str, ...]]] = [
    ("symptom", "CUDA out of memory", (OOM,)),
    ("symptom", "out of memory", (OOM,)),
    ("symptom", "model does not fit on the GPU", (OOM,)),
    ("symptom", "loss not decreasing", (FLAT,)),
    ("symptom", "loss not going down", (FLAT,)),
    ("symptom", "model is not learning", (FLAT,)),
    ("symptom", "loss is nan", (NAN,)),
    ("symptom", "loss exploding", (NAN,)),
    ("symptom", "training diverged", (NAN,)),
    ("symptom", "overfitting", (OVERFIT,)),
    ("symptom", "eval loss going up", (OVERFIT,)),
    ("symptom", "the model forgot everything", (FORGET,)),
    ("symptom", "catastrophic forgetting", (FORGET,)),
    ("symptom", "adapter does nothing", (NO_EFFECT,)),
    ("symptom", "adapter has no effect after loading", (NO_EFFECT,)),
    ("symptom", "training is slow", (SLOW,)),
    ("symptom", "low gpu utilization", (SLOW,)),
    ("symptom", "model repeats itself", (GARBAGE,)),
    ("symptom", "gibberish output", (GARBAGE,)),
    ("symptom", "never stops generating", (GARBAGE,)),
    ("error message", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", (OOM,)),
    ("error message", "expected scalar type", (NAN,)),
    ("error message", "RuntimeError: expected scalar type Float but found BFloat16", (NAN,)),
    ("error message", "Target modules {'query'} not found in the base model", (NO_EFFECT, "/params/target_modules")),
    ("error message", "element 0 of tensors does not require grad", (FLAT,)),
    ("error message", "Found missing adapter keys while loading the checkpoint", (NO_EFFECT,)),
    ("abbreviation", "OOM", (OOM,)),
    ("abbreviation", "NaN", (NAN,)),
    ("abbreviation", "lr", ("/params/learning_rate",)),
    ("abbreviation", "rank", ("/params/r",)),
    ("abbreviation", "QLoRA", ("/params/load_in_4bit",)),
    ("abbreviation", "4-bit", ("/params/load_in_4bit",)),
    ("abbreviation", "grad accum", ("/params/gradient_accumulation_steps",)),
    ("abbreviation", "bs", ("/params/per_device_train_batch_size",)),
    ("abbreviation", "wd", ("/params/weight_decay",)),
    ("abbreviation", "rslora", ("/params/use_rslora",)),
    ("abbreviation", "vllm", (NO_EFFECT,)),
    ("misspelling", "lora_alhpa", ("/params/lora_alpha",)),
    ("misspelling", "gradient acumulation", ("/params/gradient_accumulation_steps",)),
    ("misspelling", "gradiant checkpointing", ("/params/gradient_checkpointing",)),
    ("misspelling", "overfiting", (OVERFIT,)),
    ("misspelling", "dropuot", ("/params/lora_dropout",)),
    ("misspelling", "learnig rate", ("/params/learning_rate",)),
    ("as you type", "ran", ("/params/r",)),
    ("as you type", "gradient_check", ("/params/gradient_checkpointing",)),
    ("as you type", "learning ra", ("/params/learning_rate",)),
    ("field name", "lora_alpha", ("/params/lora_alpha",)),
    ("field name", "r", ("/params/r",)),
    ("field name", "target_modules", ("/params/target_modules",)),
    ("field name", "per_device_train_batch_size", ("/params/per_device_train_batch_size",)),
    ("field name", "bnb_4bit_compute_dtype", ("/params/bnb_4bit_compute_dtype",)),
    ("field name", "merge_and_unload", (NO_EFFECT,)),
    ("phrase", '"gradient checkpointing"', ("/params/gradient_checkpointing",)),
    ("phrase", "which modules to target", ("/guides/which-modules-to-target",)),
    ("phrase", "reading a loss curve", ("/guides/reading-a-loss-curve",)),
    ("phrase", "where does the memory go", ("/guides/where-training-memory-goes",)),
]


@pytest.fixture(scope="module")
def index():
    """The search index over the real content."""
    return load_library(Settings().content_dir).index


@pytest.mark.parametrize(("kind", "query", "expected"), QUERIES, ids=[f"{kind}: {query}" for kind, query, _ in QUERIES])
def test_query_finds_its_pages_in_the_first_three(index, kind, query, expected):
    top = [hit.page.url for hit in index.search(query)[:3]]
    missing = [url for url in expected if url not in top]
    assert not missing, f"{query!r} ({kind}): {missing} not in the first three {top}"


def test_every_field_name_finds_its_own_page_first(index):
    library = load_library(Settings().content_dir)
    wrong = {}
    for page in library.params.values():
        first = index.search(page.meta.field)[:1]
        if not first or first[0].page.url != page.url:
            wrong[page.meta.field] = first[0].page.url if first else None
    assert wrong == {}
