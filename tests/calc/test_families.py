"""Architecture from config.json equals the module tree transformers builds, for every catalogue model and family."""

from __future__ import annotations

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from app.calc.architecture import CONV1D, EMBEDDING, LINEAR, OTHER
from app.calc.catalogue import load_catalogue
from app.spec.errors import FieldError
from app.calc.families import SUPPORTED_MODEL_TYPES, architecture_from_config
from tests.calc.peft_oracle import catalogue_config, meta_model

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
FAMILY_CONFIGS = {
    "llama": dict(SMALL, model_type="llama", num_key_value_heads=2),
    "llama-biased": dict(SMALL, model_type="llama", attention_bias=True, mlp_bias=True, tie_word_embeddings=True),
    "mistral": dict(SMALL, model_type="mistral", num_key_value_heads=1),
    "qwen2": dict(SMALL, model_type="qwen2", num_key_value_heads=2),
    "qwen3": dict(SMALL, model_type="qwen3", num_key_value_heads=2, head_dim=16),
    "gemma": dict(SMALL, model_type="gemma", num_key_value_heads=1, head_dim=8),
    "gemma2": dict(SMALL, model_type="gemma2", num_key_value_heads=2, head_dim=8),
    "phi3": dict(SMALL, model_type="phi3", num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "mixtral": dict(SMALL, model_type="mixtral", num_key_value_heads=2, num_local_experts=4),
    "gpt2": dict(model_type="gpt2", vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0),
}
NESTED: list = []
for _ in range(500):
    NESTED = [NESTED]


def torch_tree(config: dict) -> list[tuple[str, str, tuple]]:
    """(name, kind, own parameter shapes) for every named module, as transformers builds it."""
    model = meta_model(config)
    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        if isinstance(module, torch.nn.Embedding):
            kind = EMBEDDING
        elif isinstance(module, Conv1D):
            kind = CONV1D
        elif isinstance(module, torch.nn.Linear):
            kind = LINEAR
        else:
            kind = OTHER
        shapes = tuple((param_name, tuple(param.shape)) for param_name, param in module.named_parameters(recurse=False))
        rows.append((name, kind, shapes))
    return rows, sum(param.numel() for param in model.parameters())


def calc_tree(config: dict) -> list[tuple[str, str, tuple]]:
    """The same rows from app.calc."""
    arch = architecture_from_config(config)
    rows = [(m.name, m.kind, tuple((p.name, p.shape) for p in m.params)) for m in arch.modules]
    return rows, arch.base_params


@pytest.mark.parametrize("model_id", load_catalogue().ids)
def test_catalogue_model_tree_equals_transformers(model_id):
    config = catalogue_config(model_id)
    assert calc_tree(config) == torch_tree(config)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_family_tree_equals_transformers(family):
    config = FAMILY_CONFIGS[family]
    assert calc_tree(config) == torch_tree(config)


def test_every_supported_model_type_has_a_tree_test():
    assert set(SUPPORTED_MODEL_TYPES) <= {config["model_type"] for config in FAMILY_CONFIGS.values()}


@pytest.mark.parametrize(
    ("config", "loc", "words"),
    [
        ({"model_type": "bert", "hidden_size": 8}, ("model_config", "model_type"), "supported: gemma, gemma2, gpt2"),
        ({"hidden_size": 8}, ("model_config", "model_type"), "no model_type"),
        ({**SMALL, "model_type": "llama", "hidden_size": None}, ("model_config", "hidden_size"), "required"),
        ({**SMALL, "model_type": "llama", "hidden_size": "32"}, ("model_config", "hidden_size"), "integer"),
        ({**SMALL, "model_type": "llama", "num_hidden_layers": 0}, ("model_config", "num_hidden_layers"), "at least 1"),
        ({**SMALL, "model_type": "llama", "tie_word_embeddings": "yes"}, ("model_config", "tie_word_embeddings"), "true or false"),
        ({**SMALL, "model_type": "llama", "vocab_size": 10**12}, ("model_config", "vocab_size"), "larger than any"),
        ([1, 2], ("model_config",), "JSON object"),
        ({**SMALL, "model_type": ["llama"]}, ("model_config", "model_type"), "model_type must be a string"),
        ({**SMALL, "model_type": {"llama": 1}}, ("model_config", "model_type"), "model_type must be a string"),
        ({**SMALL, "model_type": "llama", "hidden_size": True}, ("model_config", "hidden_size"), "integer"),
        ({**SMALL, "model_type": "llama", "hidden_size": 32.0}, ("model_config", "hidden_size"), "integer"),
        ({**SMALL, "model_type": "llama", "hidden_size": -32}, ("model_config", "hidden_size"), "at least 1"),
        ({**SMALL, "model_type": "llama", "num_hidden_layers": 10**12}, ("model_config", "num_hidden_layers"), "deeper than any"),
        ({**SMALL, "model_type": "llama", "num_hidden_layers": 5000}, ("model_config", "num_hidden_layers"), "most accepted is 1,024"),
        ({**SMALL, "model_type": "mixtral", "num_local_experts": 4, "num_hidden_layers": 2000},
         ("model_config", "num_hidden_layers"), "deeper than any"),
        ({**FAMILY_CONFIGS["gpt2"], "n_layer": 10**12}, ("model_config", "n_layer"), "deeper than any"),
        ({**FAMILY_CONFIGS["gpt2"], "n_head": 5}, ("model_config", "n_head"), "divisible by n_head"),
        ({**SMALL, "model_type": "llama", "num_attention_heads": 64}, ("model_config", "num_attention_heads"), "more than hidden_size"),
        ({**SMALL, "model_type": "phi3", "vocab_size": "128"}, ("model_config", "vocab_size"), "integer"),
        ({**SMALL, "model_type": "llama", "hidden_act": ["silu"]}, ("model_config", "hidden_act"), "must be a string"),
        ({**FAMILY_CONFIGS["gpt2"], "activation_function": {"a": 1}}, ("model_config", "activation_function"), "must be a string"),
        ({**SMALL, "model_type": "llama", "rope_scaling": NESTED}, ("model_config",), "nested more than 64 levels"),
    ],
)
def test_bad_configs_name_the_key(config, loc, words):
    with pytest.raises(FieldError) as caught:
        architecture_from_config(config)
    assert caught.value.loc == loc
    assert words in caught.value.message
