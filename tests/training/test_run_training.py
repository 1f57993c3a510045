"""run_training on tiny-llama: loss falls, metrics are complete, cancel, adapter round trip, parameter count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from app.content.datasets import load_dataset
from app.training.data import collate, tokenize_row
from app.training.loading import build_random_model
from pydantic import ValidationError

from app.spec import FieldError, JobSpec
from app.training.run import SAMPLE_MAX_NEW_TOKENS, run_training
from tests.training.conftest import Recorder, job_spec, tiny_spec

STEP_KEYS = {"step", "train_loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_seconds"}
RESULT_KEYS = {"status", "device", "trainable_params", "total_params", "peak_memory_bytes", "samples_before",
               "samples_after", "adapter_dir", "final_train_loss", "final_eval_loss"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 30-step tiny-llama run on the addition task, shared by the checks below."""
    from app.settings import Settings

    settings = Settings(var_dir=tmp_path_factory.mktemp("var"))
    recorder = Recorder()
    output_dir = tmp_path_factory.mktemp("job")
    result = run_training(job_spec(tiny_spec()), settings, output_dir, recorder.on_metric, recorder.should_stop, recorder.on_event)
    return settings, recorder, result


def test_loss_goes_down_over_a_few_dozen_steps(finished_run):
    _, recorder, result = finished_run
    losses = [metric["train_loss"] for metric in recorder.metrics]
    assert result.status == "succeeded" and len(losses) == 30
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5
    evals = [metric["eval_loss"] for metric in recorder.metrics if "eval_loss" in metric]
    assert evals[-1] < evals[0]
    assert result.final_train_loss == losses[-1] and result.final_eval_loss == evals[-1]


def test_every_step_reports_every_key_and_eval_steps_add_eval_loss_and_exact_match(finished_run):
    _, recorder, _ = finished_run
    assert [metric["step"] for metric in recorder.metrics] == list(range(1, 31))
    for metric in recorder.metrics:
        assert STEP_KEYS <= set(metric)
        assert all(isinstance(metric[key], (int, float)) for key in STEP_KEYS)
        assert metric["tokens_per_second"] > 0 and metric["grad_norm"] >= 0
    assert [metric["step"] for metric in recorder.metrics if "eval_loss" in metric] == [10, 20, 30]
    assert all(0 <= metric["exact_match"] <= 1 for metric in recorder.metrics if "eval_loss" in metric)
    elapsed = [metric["elapsed_seconds"] for metric in recorder.metrics]
    assert elapsed == sorted(elapsed)


def test_learning_rate_follows_the_linear_schedule(finished_run):
    _, recorder, _ = finished_run
    rates = [metric["learning_rate"] for metric in recorder.metrics]
    assert rates[0] == pytest.approx(1e-2)
    assert rates[-1] == pytest.approx(1e-2 / 30)
    assert all(earlier > later for earlier, later in zip(rates, rates[1:]))


def test_started_event_comes_once_with_device_steps_parameters_and_samples(finished_run):
    _, recorder, result = finished_run
    assert [name for name, _ in recorder.events] == ["started"]
    started = recorder.events[0][1]
    assert started["device"] == result.device and started["device"].split()[0] in ("cpu", "cuda")
    assert started["total_steps"] == 30 and started["trainable_params"] == result.trainable_params
    assert "samples_before" not in started, "a no-op initial adapter answers the 'before' prompts after training"
    shape = started["batch_shape"]  # the run's widest micro-batch, for the worker's prediction from the real data
    assert 0 < shape["width"] <= 128 and 0 < shape["loss_tokens"] <= shape["rows"] * shape["width"]
    assert [sample["prompt"] for sample in result.samples_after] == [sample["prompt"] for sample in result.samples_before]


def test_deferred_before_samples_equal_the_untrained_models_answers(finished_run):
    settings, _, result = finished_run
    from app.training.loading import load_model
    from app.training.sampling import sample_rows

    spec = tiny_spec()
    loaded = load_model(spec["model"], settings, seed=spec["training"]["seed"])
    rows = load_dataset(spec["dataset"], settings.content_dir).eval[:3]
    untrained = sample_rows(loaded.model, loaded.tokenizer, rows, SAMPLE_MAX_NEW_TOKENS, loaded.device)
    assert result.samples_before == untrained
    assert result.samples_after != untrained


def test_an_init_that_changes_the_model_samples_before_training(tmp_path):
    from app.settings import Settings

    recorder = Recorder()
    spec = {**tiny_spec(max_steps=2, eval_steps=2), "lora": {"r": 8, "target_modules": "all-linear", "init_lora_weights": False}}
    result = run_training(job_spec(spec), Settings(var_dir=tmp_path / "var"), tmp_path / "job", recorder.on_metric,
                          recorder.should_stop, recorder.on_event)
    assert recorder.events[0][1]["samples_before"] == result.samples_before != []


def test_result_holds_every_figure(finished_run):
    _, _, result = finished_run
    assert RESULT_KEYS <= set(result.model_dump(exclude_none=True))
    assert result.peak_memory_bytes >= result.baseline_memory_bytes > 0
    assert 0 < result.trainable_params < result.total_params


def test_the_phases_account_for_the_run_and_evaluation_is_part_of_training(finished_run):
    _, recorder, result = finished_run
    phases = result.phase_seconds
    assert set(phases) == {"load", "tokenise", "wrap", "train", "eval", "save", "samples"}
    assert all(seconds >= 0 for seconds in phases.values())
    # evaluations run between steps, so their time is inside "train"; the steps alone took what the last metric says
    last_elapsed = recorder.metrics[-1]["elapsed_seconds"]
    assert phases["eval"] <= phases["train"] and last_elapsed <= phases["train"] + 0.1


def test_measured_trainable_params_equal_peft_count(finished_run):
    settings, _, result = finished_run
    model, _ = build_random_model(settings, 0)
    reloaded = PeftModel.from_pretrained(model, result.adapter_dir, is_trainable=True)
    assert result.trainable_params == 16_384  # 2 layers x r=8 x (q 128 + k 96 + v 96 + o 128 + gate 192 + up 192 + down 192)
    assert reloaded.get_nb_trainable_parameters() == (result.trainable_params, result.total_params)


def test_saved_adapter_reloaded_on_the_same_base_gives_the_trained_outputs(finished_run):
    settings, _, result = finished_run
    adapter_config = json.loads((Path(result.adapter_dir) / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    model, tokenizer = build_random_model(settings, 7)  # the run's seed builds the same base weights
    reloaded = PeftModel.from_pretrained(model, result.adapter_dir).eval()
    base_only, _ = build_random_model(settings, 7)
    rows = load_dataset("addition", settings.content_dir).eval[:4]
    batch = collate([[tokenize_row(row, tokenizer, 128)] for row in rows], tokenizer.pad_token_id)
    with torch.no_grad():
        adapted = reloaded(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
        plain = base_only(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
    assert not torch.allclose(adapted, plain, atol=1e-3), "the adapter changed nothing"
    from app.training.sampling import sample_rows

    answers = sample_rows(reloaded, tokenizer, load_dataset("addition", settings.content_dir).eval[:3], 8, torch.device("cpu"))
    assert answers == result.samples_after


def test_cancel_stops_within_one_step_and_keeps_what_ran(settings, tmp_path, recorder):
    recorder.stop_after_step = 3
    result = run_training(job_spec(tiny_spec(max_steps=30)), settings, tmp_path, recorder.on_metric, recorder.should_stop, recorder.on_event)
    assert result.status == "cancelled"
    assert [metric["step"] for metric in recorder.metrics] == [1, 2, 3]
    assert result.steps_completed == 3 and recorder.stop_checks == 4
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert result.samples_after == []


def test_gradient_accumulation_packing_checkpointing_and_epochs_run_together(settings, tmp_path, recorder):
    spec = tiny_spec(max_steps=-1, num_train_epochs=0.25, per_device_train_batch_size=4, gradient_accumulation_steps=3,
                     packing=True, gradient_checkpointing=True, warmup_steps=0.5, lr_scheduler_type="cosine",
                     weight_decay=0.1, max_grad_norm=0.5, eval_steps=None, optim="adamw_torch_fused")
    spec["dataset"] = "lora-qa"
    spec["lora"] = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "use_rslora": True, "use_dora": True}
    result = run_training(job_spec(spec), settings, tmp_path, recorder.on_metric, recorder.should_stop, recorder.on_event)
    assert result.status == "succeeded"
    assert recorder.metrics[0]["learning_rate"] == 0.0  # the first warmup step
    assert [("eval_loss" in metric) for metric in recorder.metrics].count(True) == 1  # after the last step only
    assert all(metric["grad_norm"] >= 0 for metric in recorder.metrics)


def test_pasted_rows_hold_out_a_tenth_for_evaluation(settings, tmp_path, recorder):
    rows = [{"prompt": f"Say {word}.", "response": word} for word in "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()]
    spec = tiny_spec(max_steps=2)
    spec |= {"dataset": "pasted", "dataset_rows": rows}
    result = run_training(job_spec(spec), settings, tmp_path, recorder.on_metric, recorder.should_stop, recorder.on_event)
    assert result.status == "succeeded" and result.final_eval_loss is not None
    assert "exact_match" not in recorder.metrics[-1]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"training": {"learning_rate": "fast"}}, ("training", "learning_rate")),
        ({"training": {"optim": "lion_8bit"}}, ("training", "optim")),
        ({"training": {"warmup_step": 3}}, ("training", "warmup_step")),
        ({"lora": {"r": 0}}, ("lora", "r")),
        ({"lora": {"rank": 8}}, ("lora", "rank")),
        ({"colour": "blue"}, ("colour",)),
    ],
)
def test_a_bad_spec_cannot_reach_the_trainer(change, loc):
    spec = tiny_spec()
    for key, value in change.items():
        spec[key] = value
    with pytest.raises(ValidationError) as error:
        JobSpec.model_validate(spec)
    assert tuple(error.value.errors()[0]["loc"]) == loc


def test_the_instance_limits_hold_in_the_trainer_too(settings, tmp_path, recorder):
    with pytest.raises(FieldError) as error:
        run_training(job_spec(tiny_spec(max_steps=10_000)), settings, tmp_path, recorder.on_metric, recorder.should_stop,
                     recorder.on_event)
    assert error.value.loc == ("training", "max_steps")
    assert recorder.metrics == []


def test_a_lora_init_whose_package_is_missing_is_a_spec_error(settings, tmp_path, recorder, monkeypatch):
    """peft raises ImportError (e.g. loftq without scipy or bitsandbytes): the job fails with a reason, as for any bad spec."""
    import app.training.run as run

    def missing_package(**fields):
        raise ImportError("The required package 'scipy' is not installed.")

    monkeypatch.setattr(run, "LoraConfig", missing_package)
    spec = tiny_spec()
    with pytest.raises(FieldError) as error:
        run_training(job_spec(spec), settings, tmp_path, recorder.on_metric, recorder.should_stop, recorder.on_event)
    assert error.value.loc == ("lora", "init_lora_weights") and "scipy" in error.value.message
    assert recorder.metrics == []
