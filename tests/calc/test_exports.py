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


SCHEDULE = CalcTrainingSpec(base_dtype="fp32", lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.01,
                            num_train_epochs=2.0, max_steps=120, learning_rate=3e-4, per_device_train_batch_size=4,
                            gradient_accumulation_steps=2)


def schedule_context(training: CalcTrainingSpec = SCHEDULE, **lora) -> ExportContext:
    return ExportContext(LoraSpec(**(lora or SPECS["plain"])), training, "meta-llama/Llama-3.1-8B", ("q_proj", "v_proj"))


def test_schedule_warmup_weight_decay_and_epochs_appear_in_every_training_export():
    for exporter, text in render_all(schedule_context()):
        if exporter.key == "adapter_config":  # peft's own file: LoraConfig keys only (see the key-set test above)
            assert "cosine" not in text and "weight_decay" not in text
            continue
        for needle in ("cosine", "weight_decay", "0.01", "max_steps", "120", "2.0"):
            assert needle in text, (exporter.key, needle)
        assert "warmup_ratio" in text or "warmup_steps=0.1" in text, exporter.key


@pytest.mark.parametrize("warmup", [0.1, 5])
def test_peft_training_arguments_axolotl_and_llama_factory_agree(warmup):
    training = SCHEDULE.model_copy(update={"warmup_steps": warmup})
    namespace: dict = {}
    exec(compile(peft_python(schedule_context(training)), "train_lora.py", "exec"), namespace)  # noqa: S102
    args = namespace["training_args"]
    peft_side = {"scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)), "warmup": args.warmup_steps,
                 "weight_decay": args.weight_decay, "epochs": args.num_train_epochs, "max_steps": args.max_steps,
                 "lr": args.learning_rate, "batch": args.per_device_train_batch_size,
                 "accumulation": args.gradient_accumulation_steps}
    axolotl = yaml.safe_load(axolotl_yaml(schedule_context(training)))
    factory = yaml.safe_load(llama_factory_yaml(schedule_context(training)))
    axolotl_side = {"scheduler": axolotl["lr_scheduler"], "warmup": axolotl.get("warmup_ratio", axolotl.get("warmup_steps")),
                    "weight_decay": axolotl["weight_decay"], "epochs": axolotl["num_epochs"], "max_steps": axolotl["max_steps"],
                    "lr": axolotl["learning_rate"], "batch": axolotl["micro_batch_size"],
                    "accumulation": axolotl["gradient_accumulation_steps"]}
    factory_side = {"scheduler": factory["lr_scheduler_type"], "warmup": factory.get("warmup_ratio", factory.get("warmup_steps")),
                    "weight_decay": factory["weight_decay"], "epochs": factory["num_train_epochs"],
                    "max_steps": factory["max_steps"], "lr": factory["learning_rate"],
                    "batch": factory["per_device_train_batch_size"], "accumulation": factory["gradient_accumulation_steps"]}
    assert peft_side == axolotl_side == factory_side
    assert peft_side["warmup"] == warmup and peft_side["scheduler"] == "cosine"


def test_unsloth_passes_dora_and_patterns_to_loraconfig():
    text = unsloth_python(schedule_context(SCHEDULE, r=8, target_modules=["q_proj", "v_proj"], use_dora=True,
                                           rank_pattern={"q_proj": 4}, alpha_pattern={"q_proj": 16}))
    tree = ast.parse(text)
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) == "FastLanguageModel.get_peft_model")
    keywords = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert (keywords["use_dora"], keywords["rank_pattern"], keywords["alpha_pattern"]) == (True, {"q_proj": 4}, {"q_proj": 16})
    assert "Not expressible" not in text and "task_type" not in keywords


def test_axolotl_carries_patterns_and_notes_what_it_cannot_express():
    lora = dict(r=8, lora_alpha=16.5, target_modules=["q_proj"], rank_pattern={"q_proj": 4}, alpha_pattern={"q_proj": 8})
    text = axolotl_yaml(schedule_context(CalcTrainingSpec(base_dtype="fp4"), **lora))
    data = yaml.safe_load(text)
    assert (data["lora_rank_pattern"], data["lora_alpha_pattern"]) == ({"q_proj": 4}, {"q_proj": 8})
    assert isinstance(data["lora_alpha"], int)
    assert next(line for line in text.splitlines() if line.startswith("lora_alpha:")).count("# Axolotl takes an integer") == 1
    assert data["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False}
    plain = yaml.safe_load(axolotl_yaml(schedule_context(CalcTrainingSpec(base_dtype="nf4", bnb_4bit_use_double_quant=True))))
    assert "bnb_config_kwargs" not in plain  # Axolotl's own nf4 + double quantisation


def test_unsloth_notes_the_4bit_format_it_cannot_express():
    line = next(line for line in unsloth_python(schedule_context(CalcTrainingSpec(base_dtype="nf4"))).splitlines()
                if "load_in_4bit=" in line)
    assert "always loads 4-bit as nf4 with double quantisation" in line
    line = next(line for line in unsloth_python(schedule_context(CalcTrainingSpec(base_dtype="nf4", bnb_4bit_use_double_quant=True))).splitlines()
                if "load_in_4bit=" in line)
    assert "#" not in line
