"""The real pretrained model: the offline cache, its answers, and a few training steps (slow)."""

from __future__ import annotations

import pytest
import torch

from app.settings import Settings, get_settings
from app.training.loading import load_model, prepare_smollm2, prepare_smollm2_in, smollm2_cache_dir
from app.spec import JobSpec
from app.training.run import run_training
from app.training.sampling import greedy_answers
from tests.training.conftest import Recorder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_settings() -> Settings:
    """The real settings, so the converted cache is shared with `make run` (preparing it is idempotent)."""
    settings = get_settings()
    prepare_smollm2(settings)
    return settings


def test_prepare_is_idempotent_and_loads_from_the_safetensors_cache(real_settings):
    cache = smollm2_cache_dir(real_settings)
    written = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert prepare_smollm2(real_settings) == cache
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == written, "the second prepare rewrote the cache"
    loaded = load_model("smollm2-135m-instruct", real_settings)
    # how fast this is belongs to bench/bench_first_metric_latency.py, not to a timed test
    assert loaded.model.name_or_path == str(prepare_smollm2_in(real_settings, loaded.dtype))
    assert load_model("smollm2-135m-instruct", real_settings).tokenizer is loaded.tokenizer, "the tokenizer is read once per worker"
    assert loaded.model.config.num_hidden_layers == 30 and "quantization_config" not in loaded.model.config.to_dict()


def test_the_bf16_cache_holds_the_fp32_weights_rounded_once_and_is_written_once(real_settings):
    from safetensors.torch import load_file

    bf16 = prepare_smollm2_in(real_settings, torch.bfloat16)
    written = (bf16 / "model.safetensors").stat().st_mtime_ns
    assert prepare_smollm2_in(real_settings, torch.bfloat16) == bf16
    assert (bf16 / "model.safetensors").stat().st_mtime_ns == written, "the second prepare rewrote the bf16 cache"
    assert prepare_smollm2_in(real_settings, torch.float32) == smollm2_cache_dir(real_settings)
    fp32, rounded = load_file(smollm2_cache_dir(real_settings) / "model.safetensors"), load_file(bf16 / "model.safetensors")
    assert fp32.keys() == rounded.keys()
    assert all(rounded[name].dtype == torch.bfloat16 and torch.equal(fp32[name].to(torch.bfloat16), rounded[name]) for name in fp32)
    assert {file.name for file in bf16.iterdir()} == {file.name for file in smollm2_cache_dir(real_settings).iterdir()}


def test_it_answers_the_capital_of_france_before_any_training(real_settings):
    loaded = load_model("smollm2-135m-instruct", real_settings)
    conversation = [{"role": "user", "content": "What is the capital of France?"}]
    [answer] = greedy_answers(loaded.model, loaded.tokenizer, [conversation], 20, loaded.device)
    assert "Paris" in answer


def test_it_trains_a_few_steps(real_settings, tmp_path):
    recorder = Recorder()
    spec = {
        "model": "smollm2-135m-instruct",
        "dataset": "telegram-style",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "training": {"learning_rate": 1e-3, "max_steps": 3, "per_device_train_batch_size": 2, "max_seq_length": 128,
                     "optim": "adamw_torch"},
    }
    result = run_training(JobSpec.model_validate(spec), real_settings, tmp_path, recorder.on_metric, recorder.should_stop,
                          recorder.on_event)
    assert result.status == "succeeded" and len(recorder.metrics) == 3
    assert result.trainable_params == 30 * 8 * ((576 + 576) + (576 + 192))  # q_proj and v_proj of 30 blocks
    assert len(result.samples_before) == len(result.samples_after) == 3
    assert all(torch.isfinite(torch.tensor(metric["train_loss"])) for metric in recorder.metrics)
    assert result.final_eval_loss is not None
