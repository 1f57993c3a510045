"""Optimizer and learning-rate schedule from the training fields, named as transformers names them."""

from __future__ import annotations

import torch
from transformers import Adafactor, get_scheduler

from app.spec.training import TrainingSpec


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters, with weight decay on matrices only: like transformers, biases and norms are not decayed."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, config: TrainingSpec) -> torch.optim.Optimizer:
    """The optimizer `config.optim` names, with the learning rate, betas, epsilon and weight decay of the config."""
    groups = parameter_groups(model, config.weight_decay)
    betas = (config.adam_beta1, config.adam_beta2)
    if config.optim in ("adamw_torch", "adamw_torch_fused"):
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=betas, eps=config.adam_epsilon,
                                 fused=config.optim == "adamw_torch_fused")
    if config.optim == "adafactor":
        # transformers' Trainer uses Adafactor with an external learning rate, not its relative step size.
        return Adafactor(groups, lr=config.learning_rate, scale_parameter=False, relative_step=False)
    if config.optim == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate)
    if config.optim == "adagrad":
        return torch.optim.Adagrad(groups, lr=config.learning_rate)
    if config.optim == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.learning_rate)
    raise ValueError(f"optim {config.optim!r} is not supported")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingSpec, total_steps: int):
    """The learning-rate schedule `config.lr_scheduler_type` names, stepped once per optimizer step."""
    return get_scheduler(config.lr_scheduler_type, optimizer,
                         num_warmup_steps=config.warmup_step_count(total_steps),
                         num_training_steps=total_steps)
