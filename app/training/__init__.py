"""Real LoRA fine-tuning: the only package that imports torch, transformers and peft.

Only the worker process imports this package; `lorapedia worker` (app.cli) sets OMP_WAIT_POLICY from
Settings before torch is first imported and hands `run_training` to the worker loop.

The contract, app.training.run.run_training(spec, settings, output_dir, on_metric, should_stop, on_event):

- spec: an app.spec.JobSpec (model, dataset, lora, training; pasted rows in dataset_rows).
- on_event("started", {"device", "total_steps", "trainable_params", "total_params", "samples_before"})
  once before the first step; device reads "cpu float32", "cpu bfloat16 weights, fp32 adapters" (Settings.cpu_precision)
  or "cuda (<GPU name>) bfloat16".
- on_metric({"step", "train_loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_seconds",
  "tokens_seen", "epoch"}
  + "eval_loss" on eval steps + "exact_match" for the exact-match task) once per optimizer step.
  train_loss covers every target token of the step; tokens_per_second counts non-padding tokens.
- should_stop() is asked at the start of every step; True stops the run there (status "cancelled").
- Returns an app.spec.RunResult. The adapter is saved in PEFT format under output_dir/adapter, also when
  cancelled. peak_memory_bytes is the process's peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA.
- Bad input raises app.spec.FieldError (loc, message) or a DatasetError, with messages fit to show the user.
"""
