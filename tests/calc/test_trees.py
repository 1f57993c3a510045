"""Module trees: the catalogue's shipped trees equal what transformers builds now; bad configs name the reason."""

from __future__ import annotations

import copy
import json

import pytest

from app.calc.catalogue import DEFAULT_DIR, load_catalogue
from app.calc.tree import architecture_from_tree, normalised_config, tree_key
from app.spec.errors import FieldError
from app.training.trees import answer, catalogue_tree, dump_tree, hf_config
from tests.calc.peft_oracle import architecture_of

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
NESTED: list = []
for _ in range(500):
    NESTED = [NESTED]


@pytest.mark.parametrize("model", load_catalogue().models, ids=lambda model: model.id)
def test_shipped_tree_equals_transformers(model):
    """Fails when transformers or peft change a catalogue model's tree: run `lorapedia trees` and review the diff."""
    shipped = (DEFAULT_DIR / "trees" / f"{model.id}.json").read_text(encoding="utf-8")
    assert shipped == dump_tree(catalogue_tree(DEFAULT_DIR, model.id, model.task))


def test_tree_survives_json_and_keeps_ties():
    arch = load_catalogue().get("qwen2.5-0.5b").architecture
    assert arch.by_name["lm_head"].params[0].tied_to == "model.embed_tokens.weight"
    assert arch.default_target_modules == ("q_proj", "v_proj")
    again = architecture_from_tree(json.loads(json.dumps(load_catalogue().get("qwen2.5-0.5b").tree)))
    assert again.base_params == arch.base_params


def test_cache_key_ignores_metadata_but_not_structure():
    config = dict(SMALL, model_type="llama")
    versions = {"transformers": "5.24.0"}
    assert normalised_config({**config, "_name_or_path": "x", "torch_dtype": "bfloat16"}) == normalised_config(config)
    assert tree_key(config, None, versions) != tree_key({**config, "num_hidden_layers": 3}, None, versions)
    assert tree_key(config, None, versions) != tree_key(config, "seq-cls", versions)
    assert tree_key(config, None, versions) != tree_key(config, None, {"transformers": "5.25.0"})


@pytest.mark.parametrize(
    ("config", "loc", "words"),
    [
        ({"model_type": "no_such_model", "hidden_size": 8}, ("model_config", "model_type"), "not known to transformers"),
        ({"hidden_size": 8}, ("model_config", "model_type"), "no model_type"),
        ([1, 2], ("model_config",), "JSON object"),
        ({**SMALL, "model_type": ["llama"]}, ("model_config", "model_type"), "model_type must be a string"),
        ({**SMALL, "model_type": "llama", "num_hidden_layers": 5000}, ("model_config", "num_hidden_layers"), "most accepted is 1,024"),
        ({**SMALL, "model_type": "mixtral", "num_local_experts": 10**6}, ("model_config", "num_local_experts"), "more experts"),
        ({**SMALL, "model_type": "llama", "vocab_size": 10**15}, ("model_config", "vocab_size"), "larger than any"),
        ({**SMALL, "model_type": "gemma3", "text_config": {"num_hidden_layers": 10**6}},
         ("model_config", "text_config", "num_hidden_layers"), "deeper than any"),
        ({**SMALL, "model_type": "llama", "rope_scaling": NESTED}, ("model_config",), "nested more than 64 levels"),
        ({**SMALL, "model_type": "phi3", "pad_token_id": 500}, ("model_config",), "cannot build phi3"),
        ({**SMALL, "model_type": "llama", "hidden_size": "32"}, ("model_config", "hidden_size"), "expected int, got str"),
    ],
)
def test_bad_configs_name_the_reason(config, loc, words):
    with pytest.raises(FieldError) as caught:
        architecture_of(config)
    assert caught.value.loc == loc
    assert words in caught.value.message


def test_protocol_answers_errors_as_data():
    reply = answer({"id": 7, "config": {"model_type": "bert", **SMALL}, "task": "seq2seq-lm"})
    assert reply["id"] == 7
    assert reply["error"]["loc"] == ["model_config", "model_type"]
    assert "AutoModelForSeq2SeqLM" in reply["error"]["message"]


def test_reading_a_config_leaves_the_callers_dict_as_it_was():
    # transformers writes rope_theta into a nested rope_scaling; the dict may be the catalogue's cached one
    config = load_catalogue().get("gpt-oss-20b").config
    before = copy.deepcopy(config)
    hf_config(config)
    assert config == before
