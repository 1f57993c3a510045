"""The trainable models and their loaders: tiny-llama from its config, allowed paths, unknown ids, the byte tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from app.settings import Settings
from app.training.byte_tokenizer import build_byte_tokenizer
from app.training.loading import load_model, pick_precision
from app.calc import load_catalogue
from app.spec import FieldError


def test_byte_tokenizer_round_trips_any_text_within_512_ids():
    tokenizer = build_byte_tokenizer()
    text = "LoRA: ΔW = BA · α/r ✓ — naïve café 漢字"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) == 512 and max(ids) < 256
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_tiny_llama_is_built_from_the_content_config_with_seeded_random_weights(settings):
    config = json.loads((settings.content_dir / "models" / "tiny-llama.json").read_text())
    first, second, other = (load_model("tiny-llama", settings, seed=seed) for seed in (1, 1, 2))
    assert first.model.config.hidden_size == config["hidden_size"] == 64
    assert first.model.config.vocab_size == config["vocab_size"] == 512
    assert first.model.config.num_hidden_layers == 2
    assert first.dtype == pick_precision(settings)[1] == first.model.dtype  # the weights are stored as the precision says
    weights = [model.model.model.embed_tokens.weight for model in (first, second, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_unknown_model_is_a_clear_error_naming_the_choices(settings):
    with pytest.raises(FieldError, match="tiny-llama.*LORAPEDIA_ALLOWED_MODELS"):
        load_model("meta-llama/Llama-3.1-8B", settings)


def test_an_operator_allowed_local_path_loads_with_from_pretrained(settings, tmp_path):
    built = load_model("tiny-llama", settings, seed=3)
    path = tmp_path / "my-model"
    built.model.save_pretrained(path)
    built.tokenizer.save_pretrained(path)
    allowed = Settings(var_dir=settings.var_dir, allowed_models=[str(path)])
    catalogue = load_catalogue()
    assert [entry.id for entry in catalogue.trainable(allowed.allowed_models)][-1] == str(path)
    assert catalogue.resolve_trainable(str(path), allowed.allowed_models).weights == "allowed"
    loaded = load_model(str(path), allowed)
    assert torch.equal(loaded.model.model.embed_tokens.weight, built.model.model.embed_tokens.weight)
    assert loaded.tokenizer.chat_template == built.tokenizer.chat_template
    with pytest.raises(FieldError):
        load_model(str(path), settings)  # the same path is refused where the operator did not allow it
