"""The web process's token count (app.content.chat_tokens, no transformers) equals the trainer's, for every trainable catalogue model."""

from __future__ import annotations

import pytest

from app.calc import load_catalogue
from app.content import datasets
from app.jobs.admission import token_counter
from app.settings import Settings
from app.training.byte_tokenizer import build_byte_tokenizer
from app.training.data import IGNORE_INDEX, tokenize_row
from app.training.loading import load_tokenizer, smollm2_cache_dir
from tests.training.conftest import VARIED_ROWS

# Rows that tokenisers treat specially: non-ASCII, Unicode line breaks, text that looks like a special token, spaces
HARD_ROWS = [
    {"prompt": "Ünïcödé — 日本語 🙂", "response": "a\u2028b\u2029c\r\nd"},
    {"prompt": "<|im_end|> inside the prompt", "response": "<|im_start|>assistant\nand <|endoftext|>"},
    {"prompt": "   leading and trailing   ", "response": "\n\n\t"},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"},
                  {"role": "assistant", "content": "No."}]},
]


def worker_tokenizer(model_id: str, settings: Settings):
    if model_id == "tiny-llama":
        return build_byte_tokenizer()
    directory = smollm2_cache_dir(settings)
    if not (directory / "tokenizer.json").exists():
        pytest.skip("SmolLM2 is not prepared (make model)")
    return load_tokenizer(str(directory), None)


@pytest.mark.parametrize("model_id", [model.id for model in load_catalogue().trainable(())])
def test_the_submission_count_equals_the_workers_for_every_row(model_id):
    settings = Settings()
    tokenizer = worker_tokenizer(model_id, settings)
    counter = token_counter(load_catalogue().resolve_trainable(model_id), settings)
    assert counter is not None
    rows = [*VARIED_ROWS, *HARD_ROWS]
    for info in datasets.list_datasets(settings.content_dir):
        loaded = datasets.load_dataset(info.id, settings.content_dir)
        rows += loaded.train + loaded.eval
    for row in rows:
        example = tokenize_row(row, tokenizer, 1_000_000)
        first_target = next(index for index, label in enumerate(example.labels) if label != IGNORE_INDEX)
        assert counter.count(row) == (len(example.input_ids), first_target), row
