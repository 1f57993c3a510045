"""Each export is valid for its tool: the Python runs, the JSON loads in peft, the YAML carries the documented keys."""

from __future__ import annotations

import ast
import json

import peft
import pytest
import yaml

from app.calc.exports import EXPORTERS, ExportContext, render_all
from app.calc.exports.adapter_config import adapter_config_json
from app.calc.exports.axolotl import axolotl_yaml
from app.calc.exports.llama_factory import llama_factory_yaml
from app.calc.exports.peft_python import peft_python
from app.calc.exports.unsloth import unsloth_python
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

SPECS = {
    "plain": dict(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, task_type="CAUSAL_LM"),
    "all-linear-dora": dict(r=8, target_modules="all-linear", use_dora=True, use_rslora=True),
    "regex-patterns": dict(r=8, target_modules=r".*\.(q|v)_proj", rank_pattern={"q_proj": 4}, alpha_pattern={"q_proj": 16}),
    "layers-save-bias": dict(r=4, target_modules=["q_proj"], layers_to_transform=[0, 1], layers_pattern="layers",
                             modules_to_save=["lm_head"], bias="lora_only", exclude_modules=["k_proj"]),
    "pissa": dict(r=8, target_modules=["q_proj"], init_lora_weights="pissa_niter_4"),
    # init_lora_weights="loftq" is left out: peft's LoraConfig needs scipy for it, which the project does not install
}
TRAININGS = {
    "fp32": CalcTrainingSpec(base_dtype="fp32", learning_rate=1e-4),
    "nf4": CalcTrainingSpec(base_dtype="nf4", bnb_4bit_use_double_quant=True, gradient_checkpointing=True, optim="paged_adamw_8bit"),
    "int8": CalcTrainingSpec(base_dtype="int8"),
}


def context(spec: str, training: str = "fp32") -> ExportContext:
    return ExportContext(LoraSpec(**SPECS[spec]), TRAININGS[training], "meta-llama/Llama-3.1-8B", ("q_proj", "v_proj"))


def expected_config(spec: str) -> dict:
    return peft.LoraConfig(**SPECS[spec]).to_dict()


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("training", TRAININGS)
def test_python_export_builds_an_equal_loraconfig(spec, training, monkeypatch):
    namespace: dict = {}
    code = peft_python(context(spec, training))
    if training != "fp32":
        # bf16=True needs a GPU; everything else about TrainingArguments is checked with the fp32 variant
        import transformers
        monkeypatch.setattr(transformers, "TrainingArguments", lambda **kwargs: kwargs)
    exec(compile(code, "train_lora.py", "exec"), namespace)  # noqa: S102 - executing our own export is the test
    assert namespace["lora_config"].to_dict() == expected_config(spec)
    assert callable(namespace["load_model"])


def test_python_export_training_arguments_are_real():
    namespace: dict = {}
    exec(compile(peft_python(context("plain")), "train_lora.py", "exec"), namespace)  # noqa: S102
    args = namespace["training_args"]
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.learning_rate) == (8, 1, 1e-4)


@pytest.mark.parametrize("spec", SPECS)
def test_adapter_config_loads_through_peft(tmp_path, spec):
    (tmp_path / "adapter_config.json").write_text(adapter_config_json(context(spec)))
    loaded = peft.LoraConfig.from_pretrained(str(tmp_path))
    expected = expected_config(spec)
    expected["base_model_name_or_path"] = "meta-llama/Llama-3.1-8B"
    assert loaded.to_dict() == expected


def test_adapter_config_has_every_key_peft_writes(tmp_path):
    peft.LoraConfig(**SPECS["plain"]).save_pretrained(str(tmp_path))
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    ours = json.loads(adapter_config_json(context("plain")))
    assert set(ours) == set(written)


@pytest.mark.parametrize("spec", SPECS)
def test_unsloth_export_calls_get_peft_model_with_our_values(spec):
    tree = ast.parse(unsloth_python(context(spec, "nf4")))
    calls = {ast.unparse(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    keywords = {kw.arg: ast.literal_eval(kw.value) for kw in calls["FastLanguageModel.get_peft_model"].keywords}
    lora = LoraSpec(**SPECS[spec])
    assert (keywords["r"], keywords["lora_alpha"], keywords["lora_dropout"], keywords["bias"]) == (
        lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias)
    assert keywords["target_modules"] == (lora.target_modules if isinstance(lora.target_modules, list) else ["q_proj", "v_proj"])
    loader = {kw.arg: ast.literal_eval(kw.value) for kw in calls["FastLanguageModel.from_pretrained"].keywords}
    assert loader["load_in_4bit"] is True and loader["model_name"] == "meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("training", TRAININGS)
def test_axolotl_yaml_has_documented_keys(spec, training):
    data = yaml.safe_load(axolotl_yaml(context(spec, training)))
    lora = LoraSpec(**SPECS[spec])
    assert data["adapter"] == ("qlora" if training == "nf4" else "lora")
    assert (data["lora_r"], data["lora_alpha"], data["lora_dropout"]) == (lora.r, lora.lora_alpha, lora.lora_dropout)
    assert ("lora_target_linear" in data) == (lora.target_modules == "all-linear")
    if lora.target_modules != "all-linear":
        assert data["lora_target_modules"] == lora.target_modules
    assert {"base_model", "sequence_len", "micro_batch_size", "gradient_accumulation_steps", "learning_rate", "optimizer"} <= set(data)
    assert data.get("load_in_4bit", False) == (training == "nf4")
    assert data.get("load_in_8bit", False) == (training == "int8")
    assert data.get("peft_use_dora", False) == lora.use_dora
    assert data.get("peft_use_rslora", False) == lora.use_rslora


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("training", TRAININGS)
def test_llama_factory_yaml_has_documented_keys(spec, training):
    data = yaml.safe_load(llama_factory_yaml(context(spec, training)))
    lora = LoraSpec(**SPECS[spec])
    assert (data["stage"], data["finetuning_type"], data["do_train"]) == ("sft", "lora", True)
    assert (data["lora_rank"], data["lora_alpha"], data["lora_dropout"]) == (lora.r, lora.lora_alpha, lora.lora_dropout)
    expected_target = "all" if lora.target_modules == "all-linear" else ",".join(
        lora.target_modules if isinstance(lora.target_modules, list) else ["q_proj", "v_proj"])
    assert data["lora_target"] == expected_target
    assert data.get("quantization_bit") == {"nf4": 4, "int8": 8}.get(training)
    assert {"model_name_or_path", "cutoff_len", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate"} <= set(data)


def test_every_exporter_renders():
    outputs = render_all(context("layers-save-bias", "nf4"))
    assert [exporter.key for exporter, _ in outputs] == [exporter.key for exporter in EXPORTERS]
    assert all(text.strip() for _, text in outputs)
