"""The training fields of a job spec: defaults, warmup as steps or fraction, limits (pure, no torch)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.jobs.schemas import TrainingSpec
from app.jobs.spec import INTEGER_FIELDS, TRAINING_RANGES, SpecError, TrainingConfig, check_total_steps, parse_training
from app.settings import Settings

SETTINGS = Settings(max_steps=100, max_seq_length=512)


def test_defaults_are_transformers_own_except_the_instance_sequence_limit():
    config = parse_training({}, SETTINGS)
    assert (config.learning_rate, config.lr_scheduler_type, config.optim, config.num_train_epochs, config.max_steps) == (
        5e-5, "linear", "adamw_torch_fused", 3.0, -1)
    assert config.per_device_train_batch_size == 8 and config.max_grad_norm == 1.0 and config.seed == 42
    assert config.max_seq_length == 512


@pytest.mark.parametrize(("warmup", "steps"), [(0, 0), (3, 3), (0.1, 5), (0.25, 13), (1, 1)])
def test_warmup_is_a_step_count_or_a_fraction_below_one(warmup, steps):
    assert parse_training({"warmup_steps": warmup}, SETTINGS).warmup_step_count(50) == steps


def test_total_steps_come_from_max_steps_or_epochs():
    assert parse_training({"max_steps": 7}, SETTINGS).total_steps(1000) == 7
    config = parse_training({"num_train_epochs": 1.5, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}, SETTINGS)
    assert config.total_steps(40) == 8  # 1.5 x 40 rows / 8 rows per step = 7.5, rounded up
    with pytest.raises(SpecError, match="at most 100"):
        check_total_steps(TrainingConfig(num_train_epochs=30.0, per_device_train_batch_size=1), 10, SETTINGS)


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"learning_rate": 0}, "training.learning_rate", "greater than 0"),
        ({"learning_rate": True}, "training.learning_rate", "must be a number"),
        ({"per_device_train_batch_size": 2.5}, "training.per_device_train_batch_size", "whole number"),
        ({"gradient_accumulation_steps": 0}, "training.gradient_accumulation_steps", "at least 1"),
        ({"max_seq_length": 4096}, "training.max_seq_length", "at most 512"),
        ({"max_steps": 101}, "training.max_steps", "at most 100"),
        ({"max_steps": 0}, "training.max_steps", "-1"),
        ({"warmup_steps": 2.5}, "training.warmup_steps", "fraction below 1"),
        ({"packing": "yes"}, "training.packing", "true or false"),
        ({"lr_scheduler_type": "step"}, "training.lr_scheduler_type", "one of"),
        ({"optim": "adamw_bnb_8bit"}, "training.optim", "one of"),
        ({"adam_beta2": 1.0}, "training.adam_beta2", "less than 1"),
        ({"learning_rate": 5}, "training.learning_rate", "at most 1"),
        ({"seed": 2**40}, "training.seed", "at most"),
        ({"weight_decay": float("nan")}, "training.weight_decay", "finite"),
        ({"batch_size": 8}, "training.batch_size", "unknown"),
    ],
)
def test_bad_values_name_the_field_and_the_reason(values, field, reason):
    with pytest.raises(SpecError) as error:
        parse_training(values, SETTINGS)
    assert error.value.field == field and reason in error.value.reason


def just_outside(interval, integer: bool) -> list[float]:
    """Values a step past each end of the interval."""
    step = 1 if integer else 0.5
    values = []
    if interval.gt is not None:
        values.append(interval.gt)
    if interval.ge is not None:
        values.append(interval.ge - step)
    if interval.lt is not None:
        values.append(interval.lt)
    if interval.le is not None:
        values.append(interval.le + step)
    return values


API_BOUNDED = sorted(set(TRAINING_RANGES) & set(TrainingSpec.model_fields))


@pytest.mark.parametrize("name", API_BOUNDED)
def test_the_api_and_the_trainer_refuse_the_same_out_of_range_values(name):
    settings = Settings(max_steps=10**9, max_seq_length=10**9)
    integer = name in INTEGER_FIELDS
    for value in just_outside(TRAINING_RANGES[name], integer):
        value = int(value) if integer else float(value)
        with pytest.raises(ValidationError):
            TrainingSpec.model_validate({name: value})
        with pytest.raises(SpecError) as error:
            parse_training({name: value}, settings)
        assert error.value.field == f"training.{name}"
