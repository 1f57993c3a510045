"""Lints: advice on a configuration that peft accepts, each explaining itself and naming its encyclopedia page."""

from __future__ import annotations

from dataclasses import dataclass

from app.calc.architecture import CONV1D, LINEAR, Architecture
from app.calc.serving import serving_lints, vision_modules
from app.calc.trainable import ParamCount
from app.calc.tree import task_for
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

LR_LOW, LR_HIGH = 1e-5, 1e-3  # LoRA guides (LoRA paper, QLoRA, Unsloth, PEFT examples) sit between 5e-5 and 5e-4
DROPOUT_HIGH = 0.1  # QLoRA used 0.1 for models up to 13B and 0.05 above; Unsloth recommends 0


@dataclass(frozen=True)
class Lint:
    """One piece of advice: severity "warning" (likely a mistake) or "info" (worth knowing)."""

    code: str
    severity: str
    field: str
    message: str
    page: str
    source: str = ""  # where the rule comes from (library file and version, issue, paper), when not peft's own behaviour


def collect_lints(spec: LoraSpec, training: CalcTrainingSpec, arch: Architecture, count: ParamCount) -> list[Lint]:
    """Every lint that applies, warnings first."""
    found: list[Lint] = []
    add = lambda *args: found.append(Lint(*args))  # noqa: E731 - a short local helper reads best here

    if not spec.use_rslora and spec.lora_alpha < spec.r:
        add("alpha_below_r", "warning", "lora_alpha",
            f"lora_alpha ({spec.lora_alpha:g}) is below r ({spec.r}), so the update is scaled by "
            f"{spec.lora_alpha / spec.r:.3g} < 1 and learns slowly; most guides set alpha to r or 2r.", "lora_alpha")
    too_wide = [item for item in count.adapted if item.r > min(item.in_features, item.out_features)]
    if too_wide:
        item = too_wide[0]
        add("rank_above_width", "warning", "r",
            f"r={item.r} exceeds min(in, out)={min(item.in_features, item.out_features)} of {item.name} "
            f"({len(too_wide)} adapted tensors): a product of an {item.in_features}x{item.r} and an "
            f"{item.r}x{item.out_features} matrix cannot have rank above {min(item.in_features, item.out_features)}, "
            "so the extra parameters add nothing.", "r")
    for name in count.unmatched_targets:
        add("target_absent", "warning", "target_modules",
            f"target_modules entry {name!r} matches no module of {arch.model_type}; peft ignores it silently "
            "because other entries match.", "target_modules")
    for key in count.unused_rank_patterns:
        add("rank_pattern_unused", "warning", "rank_pattern",
            f"rank_pattern key {key!r} matches no adapted module; peft warns and ignores it.", "rank_pattern")
    for key in count.unused_alpha_patterns:
        add("alpha_pattern_unused", "warning", "alpha_pattern",
            f"alpha_pattern key {key!r} matches no adapted module; peft warns and ignores it.", "alpha_pattern")
    if count.excluded_nothing:
        add("exclude_unused", "warning", "exclude_modules",
            "exclude_modules excluded nothing; peft warns about it.", "exclude_modules")
    _precision_lints(spec, arch, add)
    _training_lints(spec, training, add)
    _init_lints(spec, add)
    _saving_lints(spec, arch, count, add)
    _vision_lint(spec, arch, count, add)
    serving_lints(spec, training, count, add)
    for note in count.resolved.notes:
        add("peft_rewrite", "info", "target_modules", note + ".", "target_modules")
    if count.resolved.defaulted:
        add("default_targets", "info", "target_modules",
            f"target_modules is unset, so peft uses its default for {arch.model_type}: "
            f"{', '.join(sorted(count.resolved.target_modules or ()))}.", "target_modules")
    found.sort(key=lambda lint: lint.severity != "warning")
    return found


def _precision_lints(spec: LoraSpec, arch: Architecture, add) -> None:
    kinds = {module.kind for module in arch.modules}
    if spec.fan_in_fan_out and LINEAR in kinds and CONV1D not in kinds:
        add("fan_in_fan_out_linear", "warning", "fan_in_fan_out",
            "fan_in_fan_out=True is for layers that store weights as (in, out), such as GPT-2's Conv1D; "
            "peft warns and sets it back to False for nn.Linear.", "fan_in_fan_out")
    if not spec.fan_in_fan_out and CONV1D in kinds:
        add("fan_in_fan_out_conv1d", "info", "fan_in_fan_out",
            "This model uses Conv1D layers (weights stored as (in, out)); peft sets fan_in_fan_out=True for them "
            "and warns.", "fan_in_fan_out")
    if spec.use_rslora is False and spec.r >= 64:
        add("rslora_high_rank", "info", "use_rslora",
            f"At r={spec.r}, alpha/r shrinks the update as r grows; rsLoRA (alpha/sqrt(r)) keeps its scale "
            "steady across ranks (Kalajdzievski 2023).", "use_rslora")


def _training_lints(spec: LoraSpec, training: CalcTrainingSpec, add) -> None:
    rate = training.learning_rate
    if rate > LR_HIGH:
        add("lr_high", "warning", "learning_rate",
            f"learning_rate {rate:g} is far above the usual LoRA range (about 5e-5 to 5e-4); "
            "expect the loss to spike or diverge.", "learning_rate")
    elif rate < LR_LOW:
        add("lr_low", "warning", "learning_rate",
            f"learning_rate {rate:g} is far below the usual LoRA range (about 5e-5 to 5e-4); the adapter starts "
            "at zero and will barely move.", "learning_rate")
    if spec.lora_dropout > DROPOUT_HIGH:
        add("dropout_high", "warning", "lora_dropout",
            f"lora_dropout {spec.lora_dropout:g} is above what guides use (QLoRA: 0.1 up to 13B, 0.05 above; "
            "Unsloth: 0); it slows learning for short runs.", "lora_dropout")
    elif spec.lora_dropout > 0:
        add("dropout_memory", "info", "lora_dropout",
            "lora_dropout > 0 keeps a dropped copy of each adapted layer's input for the backward pass: "
            "more activation memory than 0.", "lora_dropout")
    if training.quantized and spec.use_dora:
        add("dora_quantized", "info", "use_dora",
            "DoRA on a quantised base dequantises each weight to compute its norm: slower steps than plain QLoRA.",
            "use_dora")


def _init_lints(spec: LoraSpec, add) -> None:
    init = spec.init_lora_weights
    if spec.loftq_config and init != "loftq":
        add("loftq_ignored", "warning", "loftq_config",
            'loftq_config is set but init_lora_weights is not "loftq": peft ignores it and warns.', "loftq_config")
    if init == "loftq":
        add("loftq_needs", "info", "init_lora_weights",
            "LoftQ initialises from a quantisation of the base weights and needs scipy installed.", "loftq_config")
    if init == "eva":
        add("eva_ranks", "info", "init_lora_weights",
            "EVA redistributes ranks from data at initialisation; the counts here use the configured ranks.",
            "init_lora_weights")
    if init is False:
        add("init_false", "warning", "init_lora_weights",
            "init_lora_weights=False leaves B random: the adapter changes the model's output before any training. "
            "Use it only for tests.", "init_lora_weights")
    if init == "mica":
        add("mica_frozen_b", "info", "init_lora_weights",
            "MiCA freezes B after initialisation, so only A (r x in per layer) trains.", "init_lora_weights")


def _saving_lints(spec: LoraSpec, arch: Architecture, count: ParamCount, add) -> None:
    if spec.bias != "none":
        add("bias_trained", "info", "bias",
            f'bias="{spec.bias}" trains {count.trainable_bias:,} base biases: with the adapter disabled the model '
            "no longer matches the original.", "bias")
    tied = {arch.input_embedding, arch.output_layer} if arch.tie_word_embeddings else set()
    for name, size in count.saved_modules:
        message = f"modules_to_save copies {name} in full: {size:,} more trainable parameters, saved with the adapter."
        if name in tied:
            message += " Its weights are tied to the other end of the model; the copy is not."
        add("module_copied", "info", "modules_to_save", message, "modules_to_save")
    head = arch.classifier_head
    if head and spec.task_type is None and head not in {name for name, _ in count.saved_modules}:
        add("task_head_frozen", "warning", "task_type",
            f"This {arch.task} model's head ({head}) starts untrained, and with task_type unset peft neither trains "
            "nor saves it; task_type SEQ_CLS (or TOKEN_CLS / QUESTION_ANS) adds it to modules_to_save.", "task_type")
    wanted = task_for(spec.task_type)
    if spec.task_type not in (None, "CAUSAL_LM") and wanted != arch.task:
        add("task_type", "warning", "task_type",
            f"task_type {spec.task_type} wraps a different head; these counts are for the {arch.task} model "
            f"({arch.model_type}).", "task_type")


def _vision_lint(spec: LoraSpec, arch: Architecture, count: ParamCount, add) -> None:
    """A multimodal model's vision tower adapted alongside the language model (all-linear, or shared leaf names)."""
    adapted = [item for item in count.adapted if vision_modules((item.name,))]
    if not adapted:
        return
    params = sum(item.trainable for item in adapted)
    how = ('target_modules="all-linear" takes every nn.Linear except the output layer, the vision tower\'s included'
           if isinstance(spec.target_modules, str) and spec.target_modules.lower() == "all-linear"
           else "leaf names such as q_proj match the vision tower's layers as well as the language model's")
    add("vision_tower_adapted", "warning", "target_modules",
        f"{len(adapted)} modules of the vision tower are adapted ({params:,} of the {count.trainable:,} trainable "
        f"parameters): {how}. To adapt only the language model, set exclude_modules to a regex such as "
        r"'.*vision_tower.*' or write target_modules as a regex on the full name, e.g. "
        r"'.*language_model.*\.(q_proj|v_proj)'.", "target_modules",
        "peft 0.21.2 tuners/tuners_utils.py _maybe_include_all_linear_layers (excludes only get_output_embeddings(), "
        "or the classifier head under SEQ_CLS)")
