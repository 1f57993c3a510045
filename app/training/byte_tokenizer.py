"""tiny-llama's byte-level tokenizer (built in code, no downloads) wrapped for transformers, with the ChatML chat template."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from app.content.chat_tokens import BOS_TOKEN, CHATML_TEMPLATE, IM_END, PAD_TOKEN, byte_level_backend


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """256 byte tokens (ids 0-255), four special tokens (256-259), reserved tokens up to 511: any text round-trips."""
    return PreTrainedTokenizerFast(tokenizer_object=byte_level_backend(), bos_token=BOS_TOKEN, eos_token=IM_END,
                                   pad_token=PAD_TOKEN, chat_template=CHATML_TEMPLATE)
