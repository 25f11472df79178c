"""The optimisation loop shared by the learning curve and the embedding: a fixed number of steps,
Adam with a cosine decay to 0, a progress bar, and a clear error if the loss stops being finite.

    losses = optimise(model, steps=300, lr=3e-3, step_loss=lambda step: loss_of_a_batch(step))
"""
from __future__ import annotations

import math
import sys
from typing import Callable

import torch

from ..errors import DigitsError


def optimise(model: torch.nn.Module, steps: int, lr: float, step_loss: Callable[[int], torch.Tensor],
             progress: bool = False, desc: str = "") -> list[float]:
    """Run ``steps`` Adam steps on ``step_loss(step)``; returns the loss of every step."""
    from tqdm import tqdm

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, disable=not progress, file=sys.stderr, leave=False,
                     mininterval=0.5):
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
        if (step + 1) % 50 == 0 or step + 1 == steps:  # read back rarely: a host sync on GPUs
            _check_finite(losses, step)
    model.eval()
    return torch.stack(losses).tolist() if losses else []


def _check_finite(losses: list[torch.Tensor], step: int) -> None:
    last = losses[-1].item()
    if not math.isfinite(last):
        raise DigitsError(f"few-shot training diverged: loss is {last} at step {step + 1}; lower --lr")


def quiet(line: str) -> None:
    """The default progress log of the few-shot experiment: nothing (the CLI passes print)."""
