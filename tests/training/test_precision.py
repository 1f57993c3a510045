"""bf16 on CPU tracks fp32: the same tiny-llama job in both precisions ends at nearly the same loss."""

from __future__ import annotations

import pytest

from app.training.loading import cpu_has_bf16, load_model
from app.training.run import run_training
from tests.training.conftest import Recorder, job_spec, tiny_spec

TOLERANCE = 0.03  # relative difference of the final train loss after 20 steps, same seed and batches


@pytest.mark.parametrize("precision", ["bf16-weights", "bf16-autocast"])
def test_bf16_loss_tracks_fp32(settings, tmp_path, precision):
    losses = {}
    for name in ("fp32", precision):
        recorder = Recorder()
        configured = settings.model_copy(update={"cpu_precision": name})
        result = run_training(job_spec(tiny_spec(max_steps=20, eval_steps=None)), configured, tmp_path / name,
                              recorder.on_metric, recorder.should_stop)
        losses[name] = [metric["train_loss"] for metric in recorder.metrics]
        assert result.device == load_model("tiny-llama", configured).device_label
    assert losses["fp32"][-1] < losses["fp32"][0] * 0.9, "the job must learn for the comparison to mean anything"
    assert abs(losses[precision][-1] - losses["fp32"][-1]) <= TOLERANCE * losses["fp32"][-1]
    assert losses[precision] != losses["fp32"], "the runs must differ in precision, not be one run twice"


def test_auto_picks_bf16_only_where_the_cpu_has_it(settings):
    label = load_model("tiny-llama", settings.model_copy(update={"cpu_precision": "auto"})).device_label
    assert label == ("cpu bfloat16 weights, fp32 adapters" if cpu_has_bf16() else "cpu float32")
    assert load_model("tiny-llama", settings.model_copy(update={"cpu_precision": "fp32"})).device_label == "cpu float32"
