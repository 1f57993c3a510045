"""The fields, each defined once: LoRA (peft's names), training (TrainingArguments' names), jobs.

Pydantic only; imports nothing else of the app, so every other package can read its fields from here:
forms, API schemas, exports, jobs and the trainer. Each field carries its default, bounds, help text and
encyclopedia page (`app.spec.base.fields_of`); text from forms and query strings goes through the same
models with `context=FROM_TEXT`, so every source gets the same errors (`app.spec.errors`).
"""

from app.spec.base import FROM_TEXT, FieldMeta, fields_of
from app.spec.errors import FieldError
from app.spec.job import JobCreate, JobLoraSpec, JobSpec, RunResult
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec, HardwareSpec, InstanceLimits, JobTrainingSpec, TrainingSpec

__all__ = [
    "FROM_TEXT", "CalcTrainingSpec", "FieldError", "FieldMeta", "HardwareSpec", "InstanceLimits", "JobCreate",
    "JobLoraSpec", "JobSpec", "JobTrainingSpec", "LoraSpec", "RunResult", "TrainingSpec", "fields_of",
]
