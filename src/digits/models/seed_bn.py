"""The tutorial's network with BatchNorm, ReLUs between its linear layers and Dropout (43,000 parameters)."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class SeedBN(nn.Module):
    """conv 1->10 k5, BN, ReLU, max-pool 2; conv 10->20 k5, BN, ReLU, max-pool 2;
    linear 320->100, ReLU, 100->50, ReLU, Dropout, 50->10.

    The seed's shapes, plus what its "Prospect" asks for: BatchNorm after each convolution (its
    conv bias kept, so the seed's weights still fit) and the ReLUs that make the three linear
    layers more than one linear map."""

    def __init__(self, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 10, 5), nn.BatchNorm2d(10), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(10, 20, 5), nn.BatchNorm2d(20), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Sequential(nn.Linear(320, 100), nn.ReLU(), nn.Linear(100, 50), nn.ReLU(),
                                nn.Dropout(dropout), nn.Linear(50, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.conv1(images)).flatten(1))


@register_model("seed-bn")
def seed_bn(dropout: float = 0.25) -> nn.Module:
    """The seed's network with BatchNorm, ReLUs and Dropout (43,000 parameters)."""
    return SeedBN(dropout)
