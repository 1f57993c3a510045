"""Real LoRA fine-tuning: the only package that imports torch, transformers and peft.

Only the worker process imports this package (app.training.run loads torch); the pure modules the
web process needs too live in app.jobs: app.jobs.registry (which models a job may name) and
app.jobs.spec (the training fields and their checks). The worker entry (app.cli worker) sets
OMP_WAIT_POLICY from Settings before torch is first imported.

The worker's contract, app.training.run.run_training:

    run_training(spec: dict, settings: Settings, output_dir: Path,
                 on_metric: Callable[[dict], None], should_stop: Callable[[], bool],
                 on_event: Callable[[str, dict], None] | None = None) -> dict

spec:
    "model"          "smollm2-135m-instruct" | "tiny-llama" | an id in settings.allowed_models
    "dataset"        a catalogue id (app.content.datasets.list_datasets), or instead
    "dataset_rows"   validated rows ({"prompt", "response"} or {"messages": [...]}); with optional
                     "eval_rows" (held-out rows; default: a seeded tenth when there are >= 10 rows)
                     and "task" ("exact_match" scores the held-out rows by exact match)
    "lora"           LoraConfig fields as peft spells them (task_type defaults to CAUSAL_LM)
    "training"       TrainingConfig fields (app.jobs.spec), spelt as TrainingArguments:
                     learning_rate, lr_scheduler_type, lr_scheduler_kwargs, warmup_steps,
                     weight_decay, max_steps, num_train_epochs, per_device_train_batch_size,
                     gradient_accumulation_steps, max_seq_length, packing, seed,
                     gradient_checkpointing, max_grad_norm, optim, adam_beta1, adam_beta2,
                     adam_epsilon, eval_steps, sample_max_new_tokens
    "sample_prompts" optional user prompts answered before and after (default: 3 held-out rows)

on_event("started", {"device", "total_steps", "trainable_params", "total_params",
                     "samples_before": [{"prompt", "response"}]}) once, before the first step.
                     device reads "cpu float32" or "cuda (<GPU name>) bfloat16".
on_metric({"step", "train_loss", "learning_rate", "grad_norm", "tokens_per_second",
           "elapsed_seconds"} + {"eval_loss"} on eval steps + {"exact_match"} for the
           exact-match task) once per optimizer step. Eval steps: every eval_steps, and the last.
           train_loss is the step's loss over all its target tokens (every accumulated micro-batch);
           tokens_per_second counts real (non-padding) tokens of the step over its wall time;
           elapsed_seconds runs from the first step's start; exact_match is a fraction in [0, 1].
should_stop() is called at the start of every optimizer step; when it returns True the run
stops there (so within one step of the request) and returns status "cancelled".

Returns {"status": "succeeded" | "cancelled", "device", "trainable_params", "total_params",
"peak_memory_bytes", "baseline_memory_bytes", "samples_before", "samples_after",
"adapter_dir", "total_steps", "steps_completed", "final_train_loss", "final_eval_loss",
"final_exact_match"}. The adapter is saved (PEFT format) in output_dir/adapter also when
cancelled; samples_after is empty then. peak_memory_bytes is the process's peak RSS during the
run on CPU (baseline_memory_bytes: RSS when it started, before the model loaded), or
torch.cuda.max_memory_allocated on CUDA.

Raises SpecError (field, reason) or DatasetError (line, reason) for a bad spec,
UnknownModelError / UnknownDatasetError for unknown ids: all ValueError or KeyError, with
messages fit to show the user.
"""
