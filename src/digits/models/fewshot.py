"""Small networks for few-shot learning: a conv embedding ("protonet") and the same trunk with a
10-way head ("fewshot_cnn") for training from scratch on a handful of images per class.

    embedder = create_model("protonet")      # images (N, 1, 28, 28) -> embeddings (N, 64)
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


def _trunk(width: int) -> nn.Sequential:
    """Three conv-BN-ReLU-pool blocks, 28 -> 14 -> 7 -> 3; flattened to 2 * width * 9 features."""
    return nn.Sequential(_block(1, width), _block(width, 2 * width), _block(2 * width, 2 * width),
                         nn.Flatten())


class ProtoNet(nn.Module):
    """An embedding for prototypical networks: classes are given at use time by example images,
    and an image belongs to the class whose mean embedding (prototype) is nearest."""

    task = "embedding"

    def __init__(self, width: int = 32, embedding_dim: int = 64):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.trunk = _trunk(width)
        self.head = nn.Linear(2 * width * 9, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images))


class FewShotCNN(nn.Module):
    """The embedding's trunk with dropout and a 10-way linear classifier: returns logits (N, 10)."""

    def __init__(self, width: int = 32, dropout: float = 0.3):
        super().__init__()
        self.trunk = _trunk(width)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width * 9, 10))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images))


@register_model("protonet")
def protonet(width: int = 32, embedding_dim: int = 64) -> nn.Module:
    """Few-shot embedding (images -> 64-d vectors), trained by `digits fewshot` (92,832 parameters)."""
    return ProtoNet(width, embedding_dim)


@register_model("fewshot_cnn")
def fewshot_cnn(width: int = 16, dropout: float = 0.3) -> nn.Module:
    """Three conv-BN blocks and a linear head; the learning curve of `digits fewshot` trains it
    (17,018 parameters)."""
    return FewShotCNN(width, dropout)
