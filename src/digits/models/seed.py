"""The tutorial's network, exactly as written (42,940 parameters)."""
from __future__ import annotations

import torch
from torch import nn

from ..convpool import conv_then_pool
from .registry import register_model


class SeedNet(nn.Module):
    """conv 1->10 k5, ReLU, max-pool 2; conv 10->20 k5, ReLU, max-pool 2; linear 320->100->50->10.

    The three linear layers have no activation between them, as in the tutorial: together they
    are one linear map, which is part of why this network stops near 98%."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(10, 20, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Linear(320, 100), nn.Linear(100, 50), nn.Linear(50, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Max-pool before ReLU: relu(max(x)) == max(relu(x)) exactly, values and gradients, and
        # ReLU then runs on a quarter of the values. A training step is ~1.4x faster on the
        # 2-core CPU (benchmarks/profile_step.py); tests/test_fast_paths.py checks it is the same.
        # conv_then_pool runs each block as one CPU kernel where it can (digits/convpool.py).
        x = images
        for block in (self.conv1, self.conv2):
            conv, relu, pool = block
            x = relu(conv_then_pool(conv, pool, x))
        return self.fc(x.flatten(1))


@register_model("seed")
def seed() -> nn.Module:
    """The tutorial's Net (42,940 parameters)."""
    return SeedNet()
