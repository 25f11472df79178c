"""A small residual network for 28x28 digits (default: 19,810 parameters).

    model = create_model("resnet", width=16, depth=2)   # 16-32-64 channels, 2 blocks per stage: 174,970
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and an identity shortcut (a strided 1x1 conv where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride), nn.ReLU(), *_conv_bn(c_out, c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """stem 3x3 conv 1->w; three stages of ``depth`` blocks at w, 2w, 4w channels and 28, 14, 7
    pixels; global average pool; linear 4w->10."""

    def __init__(self, width: int = 8, depth: int = 1):
        super().__init__()
        if width < 1 or depth < 1:
            raise TypeError(f"width and depth must be positive, got width={width}, depth={depth}")
        layers: list[nn.Module] = [*_conv_bn(1, width), nn.ReLU()]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for block in range(depth):
                layers.append(BasicBlock(c_in, c_out, 2 if stage and block == 0 else 1))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@register_model("resnet")
def resnet(width: int = 8, depth: int = 1) -> nn.Module:
    """A residual network, ``depth`` basic blocks per stage at width, 2x and 4x width channels
    (defaults: 19,810 parameters)."""
    return ResNet(width, depth)
