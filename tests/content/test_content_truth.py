"""Content stays true: defaults and allowed values equal the installed libraries'; coverage; structure."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib.util
import inspect
import re
import textwrap
import typing

import peft
import peft.optimizers
import peft.tuners.lora.layer
import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model
from peft.utils.peft_types import TaskType
from transformers import BitsAndBytesConfig, TrainingArguments
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from app.spec.lora import LoraSpec
from app.content.library import load_library
from app.spec import JobTrainingSpec
from app.settings import PROJECT_ROOT

LIBRARY = load_library(PROJECT_ROOT / "content")
PARAMS = sorted(LIBRARY.params.values(), key=lambda page: page.slug)
UPSTREAM = [page for page in PARAMS if page.meta.owner in ("LoraConfig", "TrainingArguments", "BitsAndBytesConfig")]
PEFT_FUNCTIONS = [page for page in PARAMS if page.meta.owner == "peft function"]

# Every parameter the starting document names, and every one the foundation issue lists.
SEED_SLUGS = {
    "r", "lora_alpha", "lora_dropout", "loftq_config", "use_rslora", "gradient_accumulation_steps", "weight_decay",
    "learning_rate", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
}
REQUIRED_SLUGS = SEED_SLUGS | {
    "target_modules", "exclude_modules", "use_dora", "init_lora_weights", "bias", "lora_bias", "modules_to_save",
    "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "fan_in_fan_out", "task_type",
    "embed_tokens", "lm_head", "num_train_epochs", "max_steps", "per_device_train_batch_size", "max_seq_length",
    "packing", "lr_scheduler_type", "warmup_steps", "optim", "max_grad_norm", "seed", "gradient_checkpointing",
    "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
}
# The topics issue 12 asked for: each a page of its own, checked like the rest.
COVERAGE_SLUGS = {
    "loraplus_lr_ratio", "neftune_noise_alpha", "bf16", "fp16", "trainable_token_indices", "bnb_4bit_quant_storage",
    "use_qalora", "qalora_group_size", "layer_replication", "load_in_8bit", "prepare_model_for_kbit_training",
}
REQUIRED_GUIDES = {
    "choosing-r-and-alpha", "which-modules-to-target", "reading-a-loss-curve", "where-training-memory-goes",
    "loss-masking", "merging-and-serving", "batch-size-and-learning-rate", "quick-start",
}


def installed_default(owner: str, field: str):
    """The installed library's default for `owner.field`."""
    if owner == "BitsAndBytesConfig":
        return inspect.signature(BitsAndBytesConfig.__init__).parameters[field].default
    cls = {"LoraConfig": LoraConfig, "TrainingArguments": TrainingArguments}[owner]
    spec = cls.__dataclass_fields__[field]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _literal_values(owner_cls, field: str) -> list:
    # peft's config module uses postponed annotations, so resolve the hint instead of reading .type.
    hint = typing.get_type_hints(owner_cls)[field]
    return [value for arg in (typing.get_args(hint) or [hint]) for value in (typing.get_args(arg) or [arg])]


def _init_schemes() -> list[str]:
    """init_lora_weights strings peft 0.21 really dispatches on: the type hint's (less its placeholders) and the layer's."""
    hinted = [v for v in _literal_values(LoraConfig, "init_lora_weights") if isinstance(v, str) and "[" not in v]
    dispatched = re.findall(r'init_lora_weights == "(\w+)"', inspect.getsource(peft.tuners.lora.layer))
    return sorted(set(hinted) | set(dispatched))


def _quant_storage_choices() -> list[str]:
    """The strings BitsAndBytesConfig accepts for bnb_4bit_quant_storage, read from its own refusal message."""
    with pytest.raises(ValueError) as refused:
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_storage="not-a-dtype")
    choices = re.findall(r"'(\w+)'", str(refused.value))
    for choice in choices:
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_storage=choice)
    return choices


def _four_bit_quant_types() -> list[str]:
    """The 4-bit types the installed transformers recognises (and bitsandbytes, when installed, can build).

    BitsAndBytesConfig takes any string; quantization_method() is where transformers names the types it
    knows, so the candidates are the strings compared there, each confirmed by calling it.
    """
    source = textwrap.dedent(inspect.getsource(BitsAndBytesConfig.quantization_method))
    candidates = {
        node.comparators[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "bnb_4bit_quant_type"
        and isinstance(node.comparators[0], ast.Constant)
    }
    known = [name for name in sorted(candidates)
             if BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=name).quantization_method() == name]
    assert known, "BitsAndBytesConfig.quantization_method no longer names the 4-bit types: read them elsewhere"
    if importlib.util.find_spec("bitsandbytes") is not None:
        from bitsandbytes.functional import get_4bit_type

        known = [name for name in known if get_4bit_type(name) is not None]
    return known


# Where each enum's allowed values come from in the installed libraries.
INSTALLED_CHOICES = {
    ("LoraConfig", "bias"): lambda: _literal_values(LoraConfig, "bias"),
    ("LoraConfig", "task_type"): lambda: [member.value for member in TaskType],
    ("LoraConfig", "init_lora_weights"): _init_schemes,
    ("TrainingArguments", "lr_scheduler_type"): lambda: [member.value for member in SchedulerType],
    ("TrainingArguments", "optim"): lambda: [member.value for member in OptimizerNames],
    ("BitsAndBytesConfig", "bnb_4bit_quant_type"): _four_bit_quant_types,
    ("BitsAndBytesConfig", "bnb_4bit_quant_storage"): _quant_storage_choices,
}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)
    return a == b


def test_library_has_the_required_coverage():
    assert len(LIBRARY.params) >= 35
    assert REQUIRED_SLUGS | COVERAGE_SLUGS <= set(LIBRARY.params), sorted(REQUIRED_SLUGS | COVERAGE_SLUGS - set(LIBRARY.params))
    assert REQUIRED_GUIDES <= set(LIBRARY.guides), sorted(REQUIRED_GUIDES - set(LIBRARY.guides))


@pytest.mark.parametrize("page", UPSTREAM, ids=lambda page: page.slug)
def test_stated_default_equals_installed_library(page):
    meta = page.meta
    expected = installed_default(meta.owner, meta.field)
    if meta.owner == "BitsAndBytesConfig" and meta.field == "bnb_4bit_compute_dtype":
        assert expected is None and meta.default is None
        return
    if hasattr(expected, "value"):  # enums such as SchedulerType.LINEAR
        expected = expected.value
    assert _same(meta.default, expected), f"{meta.owner}.{meta.field}: page says {meta.default!r}, installed is {expected!r}"


def _accepted_compute_dtypes(values: list) -> list:
    """transformers takes any torch dtype name here; keep the stated ones it really accepts."""
    accepted = []
    for value in values:
        try:
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=value)
        except (AttributeError, TypeError, ValueError):
            continue
        accepted.append(value)
    return accepted


@pytest.mark.parametrize("page", [p for p in UPSTREAM if p.meta.type == "enum"], ids=lambda page: page.slug)
def test_stated_choices_equal_installed_library(page):
    key = (page.meta.owner, page.meta.field)
    if key == ("BitsAndBytesConfig", "bnb_4bit_compute_dtype"):
        assert _accepted_compute_dtypes(page.meta.allowed.values) == page.meta.allowed.values
        return
    assert key in INSTALLED_CHOICES, f"register where {key} gets its choices in INSTALLED_CHOICES"
    stated = [value for value in page.meta.allowed.values if not isinstance(value, bool)]
    assert sorted(map(str, stated)) == sorted(map(str, INSTALLED_CHOICES[key]()))


def test_owner_field_exists_in_installed_library():
    for page in UPSTREAM:
        if page.meta.owner == "BitsAndBytesConfig":
            assert page.meta.field in inspect.signature(BitsAndBytesConfig.__init__).parameters
        else:
            owner = {"LoraConfig": LoraConfig, "TrainingArguments": TrainingArguments}[page.meta.owner]
            assert page.meta.field in owner.__dataclass_fields__, f"{page.slug}: {page.meta.owner} has no field {page.meta.field}"


def test_every_exposed_lora_field_has_a_page():
    for name in LoraSpec.model_fields:
        assert name in LIBRARY.params, f"LoraSpec exposes {name} but content/params/{name}.md is missing"
        assert LIBRARY.params[name].meta.owner == "LoraConfig"
        assert _same(LIBRARY.params[name].meta.default, installed_default("LoraConfig", name))


def test_every_job_training_field_has_a_page_with_the_job_default():
    for name, field in JobTrainingSpec.model_fields.items():
        assert name in LIBRARY.params, f"the job form exposes {name} but content/params/{name}.md is missing"
        if LIBRARY.params[name].meta.owner == "Lorapedia job":
            assert _same(LIBRARY.params[name].meta.default, field.default), name


@pytest.mark.parametrize("page", PARAMS, ids=lambda page: page.slug)
def test_parameter_page_has_the_standard_sections_in_order(page):
    expected = [anchor for _, anchor in page.meta.required_sections()]
    anchors = [section.anchor for section in page.sections if section.level == 2]
    assert [anchor for anchor in anchors if anchor in expected] == expected, anchors


def test_versions_the_content_was_checked_against():
    assert peft.__version__.startswith("0.21.")
    assert int(transformers.__version__.split(".")[0]) == 5


def _peft_function(name: str):
    function = getattr(peft, name, None) or getattr(peft.optimizers, name)
    assert callable(function), name
    return function


@pytest.mark.parametrize("page", PEFT_FUNCTIONS, ids=lambda page: page.slug)
def test_peft_function_page_matches_the_installed_signature(page):
    meta = page.meta
    function = _peft_function(meta.function)
    if meta.field == meta.function:
        assert meta.type == "function" and not meta.has_default
        return
    parameter = inspect.signature(function).parameters[meta.field]
    if meta.has_default:
        assert _same(meta.default, parameter.default), f"{meta.function}({meta.field}=...): page says {meta.default!r}"
    else:
        assert parameter.default is inspect.Parameter.empty, f"{meta.function}({meta.field}) has a default; state it"


def test_coverage_pages_are_checked_against_an_installed_library():
    checked = {page.slug for page in UPSTREAM + PEFT_FUNCTIONS}
    assert COVERAGE_SLUGS <= checked, sorted(COVERAGE_SLUGS - checked)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(x)


@pytest.mark.parametrize("page", [p for p in UPSTREAM if p.meta.allowed and p.meta.allowed.patterns], ids=lambda p: p.slug)
def test_value_patterns_build_a_model_and_the_placeholder_does_not(page):
    assert page.meta.owner == "LoraConfig", "only LoraConfig patterns are checked so far"
    hinted = [v for v in _literal_values(LoraConfig, page.meta.field) if isinstance(v, str) and "[" in v]
    for family in page.meta.allowed.patterns:
        get_peft_model(_Tiny(), LoraConfig(r=2, target_modules=["proj"], **{page.meta.field: family.example}))
        placeholders = [v for v in hinted if re.match(family.regex.split("[", 1)[0], v)]
        assert placeholders, f"{family.shape} matches no placeholder of the installed type hint"
        with pytest.raises(ValueError):
            get_peft_model(_Tiny(), LoraConfig(r=2, target_modules=["proj"], **{page.meta.field: placeholders[0]}))


def test_every_recommendation_has_a_located_source_and_a_check_date():
    today = datetime.date.today()
    rows = [(page.slug, row) for page in PARAMS for row in page.meta.recommendations]
    assert len(rows) > 200
    for slug, row in rows:
        assert row.url or row.arxiv, f"{slug}: {row.value!r} cites no url or arXiv id"
        assert datetime.date(2025, 1, 1) <= row.checked <= today, f"{slug}: {row.value!r} checked {row.checked}"
        named_paper = re.search(r"arXiv (\d{4}\.\d{4,5})", row.source)
        if named_paper and row.arxiv:
            assert named_paper.group(1) == row.arxiv, f"{slug}: source names {named_paper.group(1)}, arxiv is {row.arxiv}"


def test_moved_sections_keep_their_old_anchor():
    for page in PARAMS:
        for anchor, alias in page.meta.anchor_aliases().items():
            assert f'<span id="{alias}" class="anchor-alias"></span><h2 id="{anchor}">' in page.html, (page.slug, alias)
