"""The catalogue: real config.json files transformers loads, with display metadata beside them."""

from __future__ import annotations

import json
import shutil

import pytest
import transformers

from app.calc.catalogue import DEFAULT_DIR, CatalogueError, load_catalogue
from app.spec.errors import FieldError
CATALOGUE = load_catalogue()
REQUIRED = {"smollm2-135m-instruct", "llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b", "mistral-7b-v0.3", "qwen2.5-0.5b",
            "qwen2.5-7b", "gemma-2-2b", "gemma-2-9b", "phi-3-mini", "mixtral-8x7b", "gpt2", "tiny-llama"}


def test_catalogue_holds_the_required_models():
    assert REQUIRED <= set(CATALOGUE.ids)


@pytest.mark.parametrize("model_id", CATALOGUE.ids)
def test_each_config_loads_in_transformers(model_id):
    config = transformers.AutoConfig.for_model(**json.loads((DEFAULT_DIR / f"{model_id}.json").read_text()))
    assert config.model_type == CATALOGUE.get(model_id).config["model_type"]


def test_tiny_llama_has_the_values_the_training_engineer_relies_on():
    config = CATALOGUE.get("tiny-llama").config
    assert {key: config[key] for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps", "model_type",
    )} == dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False, rms_norm_eps=1e-5,
               model_type="llama")


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("gpt2", "gpt2"),
        ("Qwen/Qwen2.5-0.5B", "qwen2.5-0.5b"),
        ("/data/models/google/gemma-2-2b/", "gemma-2-2b"),
        ("someone/else", None),
        (None, None),
        (["gpt2"], None),
        ({"gpt2": 1}, None),
        (5, None),
    ],
)
def test_find_by_base_model_name(name, model_id):
    found = CATALOGUE.find(name)
    assert (found.id if found else None) == model_id


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(FieldError, match="known: smollm2-135m-instruct"):
        CATALOGUE.get("llama-9000")


def _break_yaml(directory):
    (directory / "catalogue.yaml").write_text("- id: gpt2\n  name: [unclosed\n")


def _drop_licence(directory):
    path = directory / "catalogue.yaml"
    path.write_text(path.read_text().replace("  licence: MIT\n", "", 1))


def _bad_json(directory):
    (directory / "gpt2.json").write_text('{"model_type": "gpt2",')


def _unsupported_config(directory):
    (directory / "gpt2.json").write_text('{"model_type": "bert", "hidden_size": 768}')


def _missing_tree(directory):
    (directory / "trees" / "gpt2.json").unlink()


def _extra_config(directory):
    (directory / "orphan.json").write_text("{}")


def _missing_config(directory):
    (directory / "gpt2.json").unlink()


def _source_not_text(directory):
    path = directory / "catalogue.yaml"
    text = path.read_text()
    start = text.index("  source: https://huggingface.co/Qwen/Qwen3-8B/")
    path.write_text(text[:start] + "  source: [Qwen/Qwen3-8B]" + text[text.index("\n", start):])


def _not_a_list(directory):
    (directory / "catalogue.yaml").write_text("models: {}\n")


@pytest.mark.parametrize(
    ("damage", "file", "words"),
    [
        (_break_yaml, "catalogue.yaml", "is not valid YAML"),
        (_drop_licence, "catalogue.yaml", "needs licence"),
        (_not_a_list, "catalogue.yaml", "YAML list of models"),
        (_bad_json, "gpt2.json", "is not valid JSON"),
        (_unsupported_config, "gpt2.json", "model_type 'bert' differs from its tree's 'gpt2'"),
        (_missing_tree, "trees/gpt2.json", "run `lorapedia trees`"),
        (_extra_config, "catalogue.yaml", "not listed: ['orphan']"),
        (_missing_config, "gpt2.json", "cannot be read"),
        (_source_not_text, "catalogue.yaml", "source must be a string"),
    ],
)
def test_bad_catalogue_names_the_file_and_reason(tmp_path, damage, file, words):
    directory = tmp_path / "models"
    shutil.copytree(DEFAULT_DIR, directory)
    damage(directory)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(directory)
    assert caught.value.path == directory / file
    assert words in str(caught.value)
    assert str(directory / file) in str(caught.value)


def test_every_config_copied_from_the_hub_names_its_source_and_none_trains_by_accident():
    """Entries added with a `source` are calculator-only: jobs train only the two models whose weights Lorapedia has."""
    sourced = [model for model in CATALOGUE.models if model.source]
    assert len(sourced) >= 9
    assert all(model.source.startswith(f"https://huggingface.co/{model.hf_id}/") for model in sourced)
    assert {model.id for model in CATALOGUE.trainable()} == {"smollm2-135m-instruct", "tiny-llama"}
