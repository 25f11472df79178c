"""LeNet-5 (LeCun et al., 1998) for 28x28 inputs, with ReLU and max-pooling (61,706 parameters)."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class LeNet5(nn.Module):
    """conv 1->6 k5 pad 2, ReLU, max-pool 2; conv 6->16 k5, ReLU, max-pool 2;
    linear 400->120, ReLU, 120->84, ReLU, 84->10.

    The 1998 network pads 28x28 digits to 32x32; padding the first convolution does the same.
    ReLU and max-pooling replace its scaled tanh and trainable sub-sampling."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                        nn.Linear(84, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


@register_model("lenet5")
def lenet5() -> nn.Module:
    """LeNet-5 with ReLU and max-pooling (61,706 parameters)."""
    return LeNet5()
