"""A BatchNorm CNN of 3x3 convolutions in pairs, the `best` recipe's network (width 64: 1,147,722
parameters).

    model = create_model("bn-cnn", width=32)    # 32-32-64-64-128-128 channels
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class BNCNN(nn.Module):
    """Three pairs of 3x3 conv-BN-ReLU at w, 2w and 4w channels, a 2x2 max-pool after each pair
    (28 -> 14 -> 7 -> 3 pixels), a global max-pool, dropout and a linear layer to 10 logits."""

    def __init__(self, width: int = 64, dropout: float = 0.2):
        super().__init__()
        if width < 1:
            raise TypeError(f"width must be positive, got {width}")
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (width, 2 * width, 4 * width):
            layers += [*_conv_bn(c_in, c_out), *_conv_bn(c_out, c_out), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@register_model("bn-cnn")
def bn_cnn(width: int = 64, dropout: float = 0.2) -> nn.Module:
    """Pairs of 3x3 conv-BN-ReLU at width, 2x, 4x channels, max-pools, global max-pool, dropout
    (width 64: 1,147,722 parameters)."""
    return BNCNN(width, dropout)
