"""Lorapedia: an interactive encyclopedia of LoRA fine-tuning parameters."""
