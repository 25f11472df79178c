"""Seeded sampling: class-balanced training subsets, and N-way k-shot episodes.

Both return indices into the labels they are given, so the caller decides which split they come
from (the learning curve samples only the training split; unseen-class episodes only the test set).

    idx = class_balanced_subset(data.train.labels, k=10, seed=0)      # 10 images of each digit
    episode = sample_episode(labels, classes=[5, 6, 7, 8, 9], shots=1, queries=15, generator=g)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import seed_value
from ..errors import DigitsError


def _members(labels: torch.Tensor, cls: int, needed: int) -> torch.Tensor:
    members = (labels == cls).nonzero().flatten()
    if len(members) < needed:
        raise DigitsError(f"class {cls} has only {len(members)} images, {needed} are needed; "
                          "ask for fewer images per class")
    return members


def class_balanced_subset(labels: torch.Tensor, k: int, seed: int,
                          classes: list[int] | None = None) -> torch.Tensor:
    """Sorted indices of ``k`` images of each class, chosen at random by ``seed`` alone."""
    if k <= 0:
        raise DigitsError(f"images per class must be positive, got {k}")
    labels = labels.cpu()
    classes = sorted(set(labels.tolist())) if classes is None else classes
    generator = torch.Generator().manual_seed(seed_value(seed))
    picked = []
    for cls in classes:
        members = _members(labels, cls, k)
        picked.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(picked).sort().values


@dataclass
class Episode:
    support: torch.Tensor  # (ways * shots,) indices, grouped by class in the order of ``classes``
    query: torch.Tensor  # (ways * queries,) indices, grouped the same way
    support_labels: torch.Tensor  # (ways * shots,) class positions 0..ways-1
    query_labels: torch.Tensor  # (ways * queries,)


def sample_episode(labels: torch.Tensor, classes: list[int], shots: int, queries: int,
                   generator: torch.Generator) -> Episode:
    """One episode: for each class, ``shots`` support and ``queries`` query images, never the same
    image twice. Labels are positions in ``classes``, as a prototype classifier predicts them."""
    support, query = [], []
    for cls in classes:
        members = _members(labels, cls, shots + queries)
        chosen = members[torch.randperm(len(members), generator=generator)[:shots + queries]]
        support.append(chosen[:shots])
        query.append(chosen[shots:])
    ways = torch.arange(len(classes))
    return Episode(torch.cat(support), torch.cat(query), ways.repeat_interleave(shots),
                   ways.repeat_interleave(queries))
