"""The field registry as a whole: every field documented and true to the libraries, one wording everywhere, clean layers."""

from __future__ import annotations

import ast
import dataclasses
import enum
import math
from pathlib import Path

import pytest
import transformers
from annotated_types import Ge, Gt, Le, Lt
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.calc import load_catalogue
from app.settings import PROJECT_ROOT
from app.spec import CalcTrainingSpec, JobLoraSpec, JobTrainingSpec, LoraSpec, TrainingSpec, fields_of
from app.spec.errors import _BUILTIN_MESSAGES
from app.web import forms

MODELS: list[tuple[type[BaseModel], str]] = [(LoraSpec, "lora"), (CalcTrainingSpec, "training"), (JobLoraSpec, "lora"),
                                             (JobTrainingSpec, "training")]
ALL_FIELDS = [meta for model, group in MODELS for meta in fields_of(model, group)]
# Fields without an encyclopedia page, and why.
NO_PAGE = {"devices": "a property of the machine, not of any library's config"}
# TrainingSpec fields that are not TrainingArguments fields: TRL's SFTConfig has them (max_length, packing).
TRL_FIELDS = {"max_seq_length", "packing"}
# transformers 5 defaults these to None, which its Trainer reads as off.
NONE_MEANS_OFF = {"gradient_checkpointing"}


@pytest.mark.parametrize("meta", ALL_FIELDS, ids=lambda meta: f"{meta.group}.{meta.name}")
def test_every_field_has_help_text_and_an_encyclopedia_page(meta):
    assert meta.help.strip(), f"{meta.name} has no help text"
    if meta.name in NO_PAGE:
        assert meta.page is None
        return
    assert meta.page, f"{meta.name} names no page"
    assert (PROJECT_ROOT / "content" / "params" / f"{meta.page}.md").is_file(), f"{meta.name}: no content/params/{meta.page}.md"


def _library_default(field: dataclasses.Field):
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return value.value if isinstance(value, enum.Enum) else value


def test_training_defaults_are_transformers_own():
    library = {field.name: field for field in dataclasses.fields(transformers.TrainingArguments)}
    for name, info in TrainingSpec.model_fields.items():
        if name in TRL_FIELDS:
            continue
        assert name in library, f"{name} is not a TrainingArguments field"
        expected = _library_default(library[name])
        assert info.default == (False if name in NONE_MEANS_OFF and expected is None else expected), name


def test_choices_exist_in_transformers():
    optimizers = {member.value for member in transformers.training_args.OptimizerNames}
    schedulers = {member.value for member in transformers.SchedulerType}
    assert set(TrainingSpec.model_fields["optim"].annotation.__args__) <= optimizers
    assert set(TrainingSpec.model_fields["lr_scheduler_type"].annotation.__args__) <= schedulers


def test_each_field_is_defined_once():
    """Job models narrow the shared fields without redefining their bounds or help."""
    for name, info in JobTrainingSpec.model_fields.items():
        shared = TrainingSpec.model_fields[name]
        assert (info.description, info.metadata[:2]) == (shared.description, shared.metadata[:2]), name


def test_no_custom_error_type_borrows_a_pydantic_name():
    for path in (PROJECT_ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "PydanticCustomError":
                assert node.args[0].value not in _BUILTIN_MESSAGES, f"{path}: {node.args[0].value}"


def _just_outside(info) -> list[float]:
    """A value a step past each bound of a field."""
    values = []
    for item in info.metadata:
        if isinstance(item, Gt):
            values.append(item.gt)
        if isinstance(item, Ge):
            values.append(item.ge - 1)
        if isinstance(item, Lt):
            values.append(item.lt)
        if isinstance(item, Le):
            values.append(item.le + 1)
    return values


SHARED = sorted(
    (group, name, value)
    for model, group in ((LoraSpec, "lora"), (JobTrainingSpec, "training"))
    for name, info in model.model_fields.items()
    if name in forms.JOB_FIELD_NAMES and name in forms.CALCULATOR_FIELD_NAMES
    for value in _just_outside(info)
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app.main import create_app
    from app.settings import Settings
    from app.web.security import CSRF_COOKIE, CSRF_HEADER

    app = create_app(Settings(var_dir=tmp_path_factory.mktemp("var")))
    with TestClient(app, cookies={CSRF_COOKIE: "t" * 32}, headers={CSRF_HEADER: "t" * 32}) as test_client:
        yield test_client


def test_every_bounded_field_is_checked():
    assert {name for _, name, _ in SHARED} >= {"r", "lora_alpha", "lora_dropout", "learning_rate", "per_device_train_batch_size",
                                               "gradient_accumulation_steps", "max_seq_length", "seed", "adam_beta2"}


@pytest.mark.parametrize(("group", "name", "value"), SHARED, ids=lambda item: str(item))
def test_the_api_the_calculator_form_and_the_job_form_refuse_alike(client, group, name, value):
    """One just-out-of-range value, four doors, one message."""
    value = int(value) if float(value).is_integer() and not math.isinf(value) else value
    text = str(value)
    calc_api = client.post("/api/calc", json={"model": "tiny-llama", group: {name: value}})
    job_api = client.post("/api/jobs", json={"model": "tiny-llama", "dataset": "addition", group: {name: value}})
    calc_form = forms.calculator_form({"model": "tiny-llama", name: text}, load_catalogue())
    job_form = forms.job_form({"model": "tiny-llama", "dataset": "addition", name: text})
    assert calc_api.status_code == job_api.status_code == 422
    messages = {
        "calculator API": calc_api.json()["detail"][0]["msg"],
        "job API": job_api.json()["detail"][0]["msg"],
        "calculator form": calc_form.errors[name],
        "job form": job_form.errors[name],
    }
    assert len(set(messages.values())) == 1, messages
    assert text in messages["job form"] or f"{value:,}" in messages["job form"]


LAYERS = {"spec": 0, "content": 1, "calc": 1, "accounts": 1, "jobs": 2, "training": 2, "web": 3}


def _imports() -> dict[str, set[str]]:
    """Package -> the app packages its modules import."""
    graph: dict[str, set[str]] = {}
    for path in (PROJECT_ROOT / "app").rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT / "app").parts
        package = parts[0].removesuffix(".py") if len(parts) > 1 else path.stem
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                if name.startswith("app.") and name.split(".")[1] != package:
                    graph.setdefault(package, set()).add(name.split(".")[1])
    return graph


def test_spec_imports_nothing_of_the_app():
    assert not _imports().get("spec"), _imports().get("spec")


def test_packages_import_only_layers_below_them():
    for package, imported in _imports().items():
        if package not in LAYERS:
            continue
        for other in imported & set(LAYERS):
            assert LAYERS[other] < LAYERS[package], f"app.{package} imports app.{other}"


def test_no_cycle_between_packages():
    graph = _imports()
    seen: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " -> ".join((*path, node))
        if node in seen:
            return
        for other in graph.get(node, ()):
            visit(other, (*path, node))
        seen.add(node)

    for package in graph:
        visit(package, ())


def test_training_is_the_only_package_importing_torch():
    for path in (PROJECT_ROOT / "app").rglob("*.py"):
        if "training" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(name.split(".")[0] in ("torch", "transformers", "peft") for name in names), path
