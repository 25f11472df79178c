"""Few-shot evaluation on episodes: N-way k-shot tasks drawn from a labelled set, each classified
by nearest prototype in one or more feature spaces on the very same episodes.

    accs = episode_accuracies({"embedding": f, "pixels": p}, labels, [5, 6, 7, 8, 9], shots=1,
                              queries=15, episodes=600, seed=0)
    summary(accs["embedding"])          # mean, std and 95% confidence interval
"""
from __future__ import annotations

import math

import torch

from ..data import seed_value
from .baselines import class_means, nearest_prototype
from .subsets import sample_episode


def episode_accuracies(features: dict[str, torch.Tensor], labels: torch.Tensor, classes: list[int],
                       shots: int, queries: int, episodes: int, seed: int) -> dict[str, list[float]]:
    """Accuracy per episode for each named feature space; every space sees the same episodes."""
    generator = torch.Generator().manual_seed(seed_value(seed))
    labels = labels.cpu()
    out: dict[str, list[float]] = {name: [] for name in features}
    for _ in range(episodes):
        ep = sample_episode(labels, classes, shots, queries, generator)
        for name, f in features.items():
            protos = class_means(f[ep.support], ep.support_labels, len(classes))
            hits = nearest_prototype(f[ep.query], protos) == ep.query_labels
            out[name].append(hits.float().mean().item())
    return out


def summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the half-width of the normal 95% confidence interval
    of the mean (1.96 standard errors). From fewer than 2 values the spread is unknown: NaN, not 0
    (null in fewshot.json: report.write_json)."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci95": 1.96 * std / math.sqrt(n) if n > 1 else float("nan"), "n": n}


def percent_pm(stats: dict, spread: str = "std", sign: str = "±") -> str:
    """"97.12 ± 0.85": the mean and ``spread`` in percent; an unknown spread (NaN) is "n/a"."""
    value = stats[spread]
    text = "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"
    return f"{100 * stats['mean']:.2f} {sign} {text}"
