"""The terms issue 9 added: the stated basis, the framework profiles, DoRA, 4-bit buffers, real sequence lengths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.calc.peft_oracle import architecture_of
from app.calc import compute
from app.calc.memory import FRAGMENTATION, FRAMEWORKS, BatchShape, estimate_activations, estimate_memory, fitted_slack
from app.calc.trainable import count_trainable
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec
from tests.calc.peft_oracle import TREES, catalogue_config

PUBLISHED = json.loads((Path(__file__).parents[2] / "bench" / "data" / "published_memory.json").read_text())
ARCH = architecture_of(catalogue_config("llama-3.1-8b"))
SPEC = LoraSpec(r=16, target_modules="all-linear")
COUNT = count_trainable(SPEC, ARCH)


def parts(training: CalcTrainingSpec, shape: BatchShape | None = None, use_dora: bool = False) -> dict[str, int]:
    return {part.key: part.bytes for part in estimate_memory(ARCH, COUNT, training, 0.0, shape, use_dora).parts}


def test_every_total_states_its_basis_and_the_three_figures_nest():
    memory = compute({"model": "llama-3.1-8b", "lora": {"target_modules": "all-linear"}}).memory
    assert "nvidia-smi" in memory.basis and "reserved" in memory.basis
    assert memory.allocated_bytes < memory.reserved_bytes < memory.total_bytes
    cpu = compute({"model": "smollm2-135m-instruct", "training": {"base_dtype": "fp32"}}).memory
    assert "resident set" in cpu.basis and cpu.allocated_bytes < cpu.reserved_bytes < cpu.total_bytes


def test_dora_keeps_base_and_lora_outputs_per_token_and_builds_the_weight_norm():
    training = CalcTrainingSpec(per_device_train_batch_size=2, max_seq_length=512)
    lora, dora = parts(training), parts(training, use_dora=True)
    per_token = sum(item.out_features * (2 + 4) for item in COUNT.adapted)  # bf16 base output + fp32 LoRA output
    assert dora["activations"] - lora["activations"] == 2 * 512 * per_token
    largest = max(item.in_features * (item.in_features + 2 * item.out_features) for item in COUNT.adapted)
    assert dora["dora_norm"] == largest * 4 and "dora_norm" not in lora



def test_dora_over_lora_matches_peft_s_published_pair():
    """PEFT's method comparison, Llama-3.2-3B q/v r=32, 4 x 768: DoRA 24.54 GB reserved, LoRA 22.27 GB (1.10)."""
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 3072, "intermediate_size": 8192,
              "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
              "vocab_size": 128256, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    request = {"model_config": config, "training": {"per_device_train_batch_size": 4, "max_seq_length": 768, "optim": "adamw_torch"}}
    lora = {"r": 32, "lora_alpha": 64, "target_modules": ["q_proj", "v_proj"]}
    plain = compute(request | {"lora": lora}, trees=TREES).memory.reserved_bytes
    dora = compute(request | {"lora": lora | {"use_dora": True}}, trees=TREES).memory.reserved_bytes
    assert dora / plain == pytest.approx(24.54 / 22.27, abs=0.03)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_framework_sets_the_loss_the_adapter_dtype_and_the_optimizer_state(framework):
    profile = FRAMEWORKS[framework]
    result = parts(CalcTrainingSpec(per_device_train_batch_size=2, max_seq_length=1024, framework=framework))
    assert result["logits"] == 2 * 1024 * ARCH.vocab_size * profile.logit_bytes
    assert result["optimizer"] == COUNT.trainable * 2 * profile.adapter_bytes  # AdamW: two moments in the adapter dtype
    assert result["gradients"] == COUNT.trainable * profile.adapter_bytes


def test_unsloth_checkpointing_keeps_one_layer_input_on_the_gpu():
    # with dropout Unsloth runs peft's LoRA modules, so the layers match transformers' and only the offload differs
    training = dict(per_device_train_batch_size=4, max_seq_length=2048, gradient_checkpointing=True)
    hf = estimate_activations(ARCH, COUNT, CalcTrainingSpec(**training), 0.05)
    unsloth = estimate_activations(ARCH, COUNT, CalcTrainingSpec(**training, framework="unsloth"), 0.05)
    assert hf.per_token == unsloth.per_token
    # and the loss: transformers' full logits free blocks the recomputed layer then reuses; Unsloth's fused loss keeps none
    recompute = hf.one_layer + 2 * hf.tokens * hf.layer_input_per_token
    absorbed = min(recompute, hf.logits_peak)
    assert hf.activations - unsloth.activations == (ARCH.num_layers - 1) * hf.tokens * hf.layer_input_per_token - absorbed


def test_unsloth_lora_kernels_keep_one_16bit_input_per_projection_group():
    """kernels/fast_lora.py: LoRA_QKV saves X, LoRA_W its X, LoRA_MLP X, gate and up; no fp32 copy, no rank output."""
    training = CalcTrainingSpec(per_device_train_batch_size=1, max_seq_length=1024, framework="unsloth")
    fused = estimate_activations(ARCH, COUNT, training, 0.0).per_token
    hidden, query = ARCH.hidden_size, ARCH.num_attention_heads * ARCH.head_dim
    assert fused["lora_inputs"] == 2 * (hidden + query + hidden)  # q/k/v's input, o_proj's input, gate/up's input
    assert fused["lora_rank"] == 0
    assert fused["norms"] == 2 * (2 * hidden + 4)  # 16-bit input and a fp32 inverse RMS per token
    assert fused["lora_inputs"] < estimate_activations(ARCH, COUNT, training.model_copy(update={"framework": "transformers"}),
                                                       0.0).per_token["lora_inputs"] / 5


def test_4bit_adds_one_dequantised_weight_and_16bit_none():
    nf4 = parts(CalcTrainingSpec(base_dtype="nf4"))
    largest = max(m.in_features * m.out_features for m in ARCH.modules if m.kind == "linear" and m.name != "lm_head")
    assert nf4["dequant"] == largest * 2
    assert "dequant" not in parts(CalcTrainingSpec(base_dtype="bf16"))


def test_8bit_and_paged_optimizers():
    assert parts(CalcTrainingSpec(optim="adamw_8bit"))["optimizer"] == parts(CalcTrainingSpec(optim="paged_adamw_8bit"))["optimizer"] \
        == COUNT.trainable * 2
    paged = compute({"model": "llama-3.1-8b", "training": {"optim": "paged_adamw_32bit"}}).memory
    assert any("unified memory" in line for line in paged.assumptions)


def test_typical_length_sets_the_batch_width_unless_packed():
    full = parts(CalcTrainingSpec(max_seq_length=2048))
    typical = parts(CalcTrainingSpec(max_seq_length=2048, typical_seq_length=512))
    same = parts(CalcTrainingSpec(max_seq_length=512))
    assert typical["activations"] == same["activations"] < full["activations"]
    assert typical["logits"] == same["logits"]
    assert parts(CalcTrainingSpec(max_seq_length=2048, typical_seq_length=512, packing=True)) == full
    assert parts(CalcTrainingSpec(max_seq_length=512, typical_seq_length=4096)) == same  # never above max_seq_length


def test_a_measured_batch_shape_replaces_the_assumption():
    training = CalcTrainingSpec(per_device_train_batch_size=4, max_seq_length=256)
    measured = parts(training, BatchShape(rows=4, width=90, loss_tokens=120))
    assert measured["logits"] == 120 * ARCH.vocab_size * 12
    assert measured["activations"] == parts(CalcTrainingSpec(per_device_train_batch_size=4, max_seq_length=90))["activations"]


def test_4bit_weights_match_a_published_bitsandbytes_checkpoint():
    """bench/data/published_memory.json checkpoint_sizes: a bnb 4-bit checkpoint stores what the GPU holds."""
    for case in PUBLISHED["checkpoint_sizes"]:
        training = CalcTrainingSpec(base_dtype="nf4", bnb_4bit_use_double_quant=case["bnb_4bit_use_double_quant"],
                                    framework="unsloth")  # Unsloth keeps the rest 16-bit, as the checkpoint does
        arch = architecture_of(catalogue_config(case["model"]))
        weights = {p.key: p.bytes for p in estimate_memory(arch, count_trainable(SPEC, arch), training, 0.0).parts}
        assert weights["base_weights"] == pytest.approx(case["published_bytes"], rel=0.005)  # "5.70G": 3 digits


def test_allocator_slack_is_the_fraction_the_published_runs_show():
    """bench/data/published_memory.json allocator_slack: the rule's fraction is the least-squares fit of those runs."""
    runs = [(run["peak_allocated_bytes"], run["end_allocated_bytes"], int(run["nvidia_smi_mib"] * 2**20))
            for run in PUBLISHED["allocator_slack"]["runs"]]
    assert len(runs) >= 18 and FRAGMENTATION == pytest.approx(fitted_slack(runs), abs=0.005)


def test_allocator_slack_follows_the_short_lived_tensors_not_the_weights():
    """A 4-bit base holds smaller weights, so its reserved/allocated ratio is the larger for the same activations."""
    shares = {}
    for dtype in ("bf16", "nf4"):
        estimate = estimate_memory(ARCH, count_trainable(SPEC, ARCH), CalcTrainingSpec(base_dtype=dtype), 0.0)
        shares[dtype] = estimate.reserved_bytes / estimate.allocated_bytes
    assert shares["nf4"] > shares["bf16"]


def test_16bit_adapters_share_each_input_where_fp32_adapters_copy_it_per_module():
    """LitGPT keeps adapters in bf16: modules reading one tensor share it; peft's fp32 adapters cast it per module."""
    terms = {framework: estimate_activations(ARCH, COUNT, CalcTrainingSpec(base_dtype="bf16", framework=framework),
                                             0.0).per_token["lora_inputs"] for framework in ("litgpt", "transformers")}
    h, i, q = ARCH.hidden_size, ARCH.intermediate_size, ARCH.num_attention_heads * ARCH.head_dim
    assert terms["litgpt"] == 2 * (h + h + i)  # q/k/v's input, gate/up's input, down's input; o_proj's is SDPA's output
    assert terms["transformers"] == 4 * (3 * h + q + 2 * h + i)  # one fp32 copy per adapted module


def test_padding_to_the_longest_is_stated_only_for_unpacked_batches():
    said = {}
    for packing in (False, True):
        training = CalcTrainingSpec(base_dtype="bf16", typical_seq_length=300, max_seq_length=2048, packing=packing)
        said[packing] = " ".join(estimate_memory(ARCH, COUNT, training, 0.0).assumptions)
    assert "padded to the longest in each micro-batch" in said[False]
    assert "padded to the longest" not in said[True]


def test_the_logits_detail_names_log_softmax_s_backward_only_for_the_full_fp32_loss():
    details = {}
    for framework in ("transformers", "litgpt"):
        estimate = estimate_memory(ARCH, COUNT, CalcTrainingSpec(base_dtype="bf16", framework=framework), 0.0)
        details[framework] = next(part.detail for part in estimate.parts if part.key == "logits")
    assert "log_softmax's backward" in details["transformers"]
    assert "log_softmax's backward" not in details["litgpt"]


def test_gpt2_s_low_activation_figure_is_stated_for_gpt2_only():
    """A shrunk GPT-2 saved 1.4-2.2x the modelled activations (tanh GELU op by op, dropouts): the page must say so."""
    for model, stated in (("gpt2", True), ("llama-3.1-8b", False)):
        arch = architecture_of(catalogue_config(model))
        estimate = estimate_memory(arch, count_trainable(SPEC, arch), CalcTrainingSpec(base_dtype="bf16"), 0.0)
        assert any(line.startswith("GPT-2: the activations are low") for line in estimate.assumptions) is stated


def test_mica_s_frozen_b_is_stored_but_gets_no_gradient():
    count = count_trainable(LoraSpec(r=16, target_modules="all-linear", init_lora_weights="mica"), ARCH)
    estimate = estimate_memory(ARCH, count, CalcTrainingSpec(base_dtype="bf16"), 0.0)
    part = {p.key: p for p in estimate.parts}
    stored = count.total - count.base  # A and the frozen B of every adapted module
    assert stored > count.trainable
    assert part["adapter_weights"].bytes == 4 * stored and f"{stored:,} adapter parameters" in part["adapter_weights"].detail
    assert part["gradients"].bytes == 4 * count.trainable
