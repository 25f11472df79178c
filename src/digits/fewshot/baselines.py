"""Classifiers without learning: prototypes (class means) and nearest neighbours, on any features.

On raw pixels these are the baselines of the few-shot experiment; on learned embeddings the
prototype classifier is what a prototypical network predicts with.

    protos = class_means(features, labels, num_classes=10)
    predictions = nearest_prototype(test_features, protos)
"""
from __future__ import annotations

import torch


def pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 1, 28, 28) -> float features (N, 784) in [0, 1]."""
    return images.flatten(1).float() / 255


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, D): the mean feature vector of each class (NaN for a class with no example)."""
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums / counts.unsqueeze(1)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) squared Euclidean distances, by one matrix product (clamped at 0)."""
    return (a.square().sum(1, keepdim=True) - 2 * a @ b.T + b.square().sum(1)).clamp_(min=0)


def nearest_prototype(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """(N,) index of the nearest prototype of each feature vector."""
    return squared_distances(features, prototypes).argmin(1)


@torch.inference_mode()
def nearest_neighbour(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
                      chunk: int = 1000) -> torch.Tensor:
    """(N,) label of each test vector's nearest training vector (1-NN, Euclidean), ``chunk`` test
    vectors at a time so the distance matrix stays small."""
    out = [train_labels[squared_distances(part, train).argmin(1)] for part in test.split(chunk)]
    return torch.cat(out) if out else train_labels.new_empty(0)
