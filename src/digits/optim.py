"""Optimisers and learning-rate schedules, built from an OptimConfig.

    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim)   # scheduler.step() once per epoch
"""
from __future__ import annotations

import torch

from .config import OptimConfig
from .errors import DigitsError


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise DigitsError(f"unknown optimizer {cfg.optimizer!r}; choose one of: sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig):
    """A learning-rate schedule stepped once per epoch."""
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    raise DigitsError(f"unknown scheduler {cfg.scheduler!r}; choose one of: step, none")
