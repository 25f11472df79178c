"""Optimisers, learning-rate schedules (stepped once per training step), gradient clipping and
weight EMA, built from an OptimConfig.

    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim, steps_per_epoch)  # .step() after every step
    ema = make_ema(model, config.optim)                                     # None when off
"""
from __future__ import annotations

import copy
import math

import torch

from .config import OptimConfig, non_finite
from .errors import DigitsError
from .optimizers import SGD, Adam

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("step", "cosine", "onecycle", "onecycle_cos", "none")


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params, betas = model.parameters(), (cfg.beta1, cfg.beta2)
    # digits.optimizers has torch.optim's SGD and Adam updates without its first-use import of
    # torch._dynamo (1.35-1.9 s of CPU here); the variants it lacks come from torch.optim
    if cfg.optimizer == "sgd":  # Nesterov only with momentum (torch.optim refuses it without)
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                   nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam" and cfg.weight_decay == 0:
        return Adam(params, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    raise _unknown("optimizer", cfg.optimizer, OPTIMIZERS)


def _unknown(kind: str, name: str, choices: tuple[str, ...]) -> DigitsError:
    return DigitsError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}")


def lr_factor(step: int, cfg: OptimConfig, steps_per_epoch: int) -> float:
    """The learning rate of training step ``step`` (0-based) as a fraction of ``cfg.lr``."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.scheduler == "onecycle":
        rise = min(total - 1, warmup or total // 4)
        if step < rise:
            return (step + 1) / rise
        return max(0.0, (total - step) / (total - rise))
    if cfg.scheduler == "onecycle_cos":
        return one_cycle_cos(step, total, cfg.warmup_epochs / cfg.epochs if cfg.warmup_epochs else 0.25)
    ramp = (step + 1) / warmup if step < warmup else 1.0
    if cfg.scheduler == "step":
        return ramp * cfg.gamma ** (step // steps_per_epoch // cfg.step_size)
    if cfg.scheduler == "cosine":
        t = min(1.0, max(0, step - warmup) / max(1, total - warmup))
        return ramp * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.scheduler == "none":
        return ramp
    raise _unknown("scheduler", cfg.scheduler, SCHEDULERS)


def one_cycle_cos(step: int, total: int, rise: float) -> float:
    """torch's OneCycleLR (no momentum cycling) as a factor of the peak: cosine from 1/25 up to 1
    over the first ``rise`` of the steps, then cosine down to 1/25e4."""
    up = max(1e-9, rise * total - 1)  # the step where the rise ends, as torch computes it
    start, low = 1 / 25, 1 / 25 / 1e4
    if step <= up:
        return start + (1 - start) * (1 - math.cos(math.pi * step / up)) / 2
    pct = min(1.0, (step - up) / max(1e-9, total - 1 - up))
    return low + (1 - low) * (1 + math.cos(math.pi * pct)) / 2


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int):
    """A LambdaLR over training steps: call ``.step()`` after every optimizer step.

    The seed's StepLR(step_size, gamma), stepped per epoch, becomes the same learning rates
    evaluated per step, so every schedule (warm-up and one-cycle need it) has one stepping rule."""
    check_schedule(cfg)  # before training, and before a --step-size of 0 divides by zero
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, steps_per_epoch))


def clip_gradients(model: torch.nn.Module, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


class EMA:
    """An exponential moving average of a model's weights; ``module`` is the averaged copy.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so early weights (from
    random initialisation) fade quickly. BatchNorm statistics are copied, not averaged."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise DigitsError(f"--ema-decay must be between 0 and 1 (e.g. 0.999), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for averaged, current in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(current.detach(), 1 - decay)
        for averaged, current in zip(self.module.buffers(), model.buffers()):
            averaged.copy_(current)


def make_ema(model: torch.nn.Module, cfg: OptimConfig) -> EMA | None:
    return EMA(model, cfg.ema_decay) if cfg.ema_decay else None


def check_schedule(cfg: OptimConfig) -> None:
    if cfg.scheduler not in SCHEDULERS:
        raise _unknown("scheduler", cfg.scheduler, SCHEDULERS)
    if cfg.scheduler == "step" and cfg.step_size <= 0:  # the other schedules do not use it
        raise DigitsError(f"--step-size must be positive, got {cfg.step_size}")


def check_optim(cfg: OptimConfig) -> None:
    """Reject settings a user can get wrong, with the flag's name: everything make_optimizer,
    make_scheduler and make_ema would refuse, checked before a run writes anything."""
    if bad := non_finite(cfg):  # --lr nan ran until "training diverged"; --clip-grad-norm nan turned clipping off
        raise DigitsError(f"{bad[0]} must be a finite number, got {bad[1]}")
    if cfg.optimizer not in OPTIMIZERS:
        raise _unknown("optimizer", cfg.optimizer, OPTIMIZERS)
    check_schedule(cfg)
    if not 0 <= cfg.label_smoothing < 1:
        raise DigitsError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if min(cfg.clip_grad_norm, cfg.warmup_epochs, cfg.momentum, cfg.weight_decay) < 0:
        raise DigitsError("--clip-grad-norm, --warmup-epochs, --momentum and --weight-decay must not be negative")
    for flag, value in (("--beta1", cfg.beta1), ("--beta2", cfg.beta2), ("--ema-decay", cfg.ema_decay)):
        if not 0 <= value < 1:
            raise DigitsError(f"{flag} must be in [0, 1), got {value}")
