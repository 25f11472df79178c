"""Figures of `digits fewshot`; like digits.plots, the only place here that imports matplotlib.

    plot_learning_curve(rows, full_per_class=5500, path="out/learning_curve.png")
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from ..plots import _save  # noqa: E402

_LABELS = {"network": "CNN from scratch (augmented)", "nearest_neighbour": "1-NN, raw pixels",
           "nearest_class_mean": "nearest class mean, raw pixels"}


def plot_learning_curve(rows: list[dict], full_per_class: float, path) -> Path:
    """Test accuracy (mean ± std over subsets) against images per class, log x axis; the full
    training split is placed at its average images per class."""
    xs = [full_per_class if r["k"] == "full" else r["k"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, label in _LABELS.items():
        means = [100 * r[method]["mean"] for r in rows]
        stds = [100 * r[method]["std"] for r in rows]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(r["k"]) for r in rows])
    # the log axis labels some minor ticks by itself ("3x10^1" beside 20 and 50): only k is labelled
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="training images per class (log scale)", ylabel="test accuracy (%)",
           title="MNIST accuracy against training images per class")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_unseen_classes(rows: list[dict], path) -> Path:
    """Bars of 5-way accuracy on digits 5-9 per shot count, with 95% confidence intervals."""
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for offset, (key, label) in zip((-width / 2, width / 2), (("embedding", "embedding (learned on 0-4)"),
                                                              ("pixels", "class mean, raw pixels"))):
        xs = [i + offset for i in range(len(rows))]
        ax.bar(xs, [100 * r[key]["mean"] for r in rows], width, yerr=[100 * r[key]["ci95"] for r in rows],
               capsize=4, label=label)
    ax.set_xticks(range(len(rows)), [f"{r['shots']}-shot" for r in rows])
    ax.set(ylabel="accuracy (%)", ylim=(0, 112), yticks=range(0, 101, 20),
           title="5-way episodes on unseen digits 5-9")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper center", ncol=2, fontsize=9)
    return _save(fig, path)
