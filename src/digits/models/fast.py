"""A small network for the `fast` recipe: the seed network's shape with what it lacks for speed of
learning (batch normalisation, ReLU in the classifier), sized for a 2-core CPU.

    model = create_model("fast")                      # conv 1->12 k5, conv 12->24 k3, linear 600->96->10
    model = create_model("fast", c1=16, c2=32, hidden=128)
"""
from __future__ import annotations

import torch
from torch import nn

from ..convpool import conv_then_pool
from .registry import register_model


class FastNet(nn.Module):
    """conv k5 -> max-pool 2 -> BN -> ReLU; conv k3 -> max-pool 2 -> BN -> ReLU; linear -> ReLU -> linear.

    Pooling comes before batch norm and ReLU, so both run on a quarter of the values. With
    ``pool=False`` the convolutions take stride 2 instead of the max-pools (the same shapes and
    parameters): training 1.3-1.6x faster on a 2-core CPU, 0.17 points lower validation accuracy
    (BENCHMARKS.md), so no recipe uses it."""

    def __init__(self, c1: int = 12, c2: int = 24, hidden: int = 96, k2: int = 3, pool: bool = True):
        super().__init__()
        if not isinstance(pool, bool):  # `--model-arg pool=False` arrives as the string "False"
            raise ValueError(f"pool must be true or false, got {pool!r}")
        side = ((28 - 4) // 2 - (k2 - 1)) // 2  # 5 for k2=3, 4 for k2=5
        stride = 1 if pool else 2
        self.conv1 = nn.Conv2d(1, c1, 5, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, k2, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, 10)
        self.pool = nn.MaxPool2d(2, ceil_mode=False) if pool else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only: torch's operators
            x = torch.relu(self.bn1(self.pool(self.conv1(images))))
            x = torch.relu(self.bn2(self.pool(self.conv2(x))))
        else:  # the first block as one CPU kernel (digits/convpool.py), the second too with k2=5
            x = torch.relu(self.bn1(conv_then_pool(self.conv1, self.pool, images)))
            x = torch.relu(self.bn2(conv_then_pool(self.conv2, self.pool, x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@register_model("fast")
def fast(c1: int = 12, c2: int = 24, hidden: int = 96, k2: int = 3, pool: bool = True) -> nn.Module:
    """The `fast` recipe's network (see FastNet): 61,630 parameters."""
    return FastNet(c1, c2, hidden, k2, pool)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class WideNet(nn.Module):
    """Six 3x3 conv layers with batch norm, widths 64-64-128-128-256-256, a max-pool after every
    second; global max-pool; linear 256->10 (all widths scale with ``width``). For the >= 0.995 GPU
    recipe (`wide`, at width 32)."""

    def __init__(self, width: int = 64):
        super().__init__()
        w = (width, width, 2 * width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential(
            _block(1, w[0]), _block(w[0], w[1]), nn.MaxPool2d(2),
            _block(w[1], w[2]), _block(w[2], w[3]), nn.MaxPool2d(2),
            _block(w[3], w[4]), _block(w[4], w[5]), nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(w[5], 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


@register_model("wide")
def wide(width: int = 64) -> nn.Module:
    """The `wide` recipe's network (see WideNet): 1,147,722 parameters; 288,170 at width 32, as the
    recipe trains it."""
    return WideNet(width)
