"""Counting a chat row's tokens as the trainer does, with the `tokenizers` library only (no torch, no transformers).

The trainer renders each row with the model's chat template, cuts it into prompt and response pieces
(chat_segments) and tokenises each piece alone without special tokens; the web process counts the same
way at submission, so a row that cannot fit max_seq_length is refused before it queues.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from app.content.datasets import row_messages

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
BYTE_VOCAB_SIZE = 512  # tiny-llama's embedding rows; ids past the named tokens are reserved so every id decodes

# ChatML, the format SmolLM2 uses too, so both built-in models see the same kind of prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Render = Callable[[list[dict], bool], str]


def chat_segments(row: dict, render: Render) -> list[tuple[str, bool]]:
    """The row rendered by `render(messages, add_generation_prompt)`, cut into (text, is_response) pieces: only assistant turns are targets."""
    messages = row_messages(row)
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:index], True)
        full = render(messages[: index + 1], False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise ValueError("the chat template does not render conversations as growing prefixes; cannot mask prompts")
        segments.append((prompt[len(rendered):], False))
        segments.append((full[len(prompt):], True))
        rendered = full
    return [(text, is_response) for text, is_response in segments if text]


def byte_level_backend() -> Tokenizer:
    """tiny-llama's tokenizer: 256 byte tokens (ids 0-255), four special tokens (256-259), reserved tokens up to 511."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # Order by the byte each character stands for, so token id == byte value.
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[byte]: byte for byte in range(256)}
    assert set(vocab) == set(alphabet)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    named = [PAD_TOKEN, BOS_TOKEN, IM_START, IM_END]
    reserved = [f"<|reserved_{index}|>" for index in range(BYTE_VOCAB_SIZE - 256 - len(named))]
    backend.add_special_tokens(named + reserved)
    return backend


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte, the convention ByteLevel uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {byte: chr(byte) for byte in printable}
    shift = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shift)
            shift += 1
    return mapping


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    # The environment transformers renders chat templates in (sandboxed, trimmed blocks, loop controls, its tojson)
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise
    environment.globals["strftime_now"] = lambda format: datetime.now().strftime(format)
    return environment.from_string(template)


@dataclass(frozen=True)
class ChatCounter:
    """A model's tokenizer and chat template, counting rows as the trainer tokenises them."""

    backend: Tokenizer
    template: str
    special_tokens: tuple[tuple[str, str], ...] = ()

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The conversation as the chat template writes it."""
        return _compile(self.template).render(messages=messages, add_generation_prompt=add_generation_prompt, tools=None,
                                              documents=None, **dict(self.special_tokens))

    def count(self, row: dict) -> tuple[int, int | None]:
        """Tokens of the whole row, and the position of its first response token (None when it has none)."""
        pieces = chat_segments(row, self.render)
        encodings = self.backend.encode_batch([text for text, _ in pieces], add_special_tokens=False)
        total, first_response = 0, None
        for (_, is_response), encoding in zip(pieces, encodings, strict=True):
            if is_response and first_response is None and encoding.ids:
                first_response = total
            total += len(encoding.ids)
        return total, first_response


def byte_level_counter() -> ChatCounter:
    """tiny-llama's counter (its tokenizer is built in code)."""
    special = (("bos_token", BOS_TOKEN), ("eos_token", IM_END), ("pad_token", PAD_TOKEN))
    return ChatCounter(byte_level_backend(), CHATML_TEMPLATE, special)


@lru_cache(maxsize=4)
def _directory_counter(directory: str, stamp: float) -> ChatCounter:
    path = Path(directory)
    config = json.loads((path / "tokenizer_config.json").read_text())
    template_file = path / "chat_template.jinja"
    template = template_file.read_text() if template_file.exists() else config.get("chat_template")
    if not isinstance(template, str):
        raise ValueError(f"{directory} has no chat template")
    special = tuple((key, value) for key, value in config.items() if key.endswith("_token") and isinstance(value, str))
    return ChatCounter(Tokenizer.from_file(str(path / "tokenizer.json")), template, special)


def directory_counter(directory: Path) -> ChatCounter | None:
    """The counter of a local model directory (tokenizer.json, its config and chat template); None until it is there."""
    files = [directory / "tokenizer.json", directory / "tokenizer_config.json"]
    if not all(file.exists() for file in files):
        return None
    return _directory_counter(str(directory), max(file.stat().st_mtime for file in directory.iterdir()))
