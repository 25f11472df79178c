"""Figures as PNG files. The only module that imports matplotlib (Agg backend: no screen needed).

    plot_confusion_matrix(result.confusion, "figures/confusion_matrix.png")
"""
from __future__ import annotations

import math

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .atomic import atomic_write  # noqa: E402
from .errors import DigitsError  # noqa: E402
from .figformat import figure_format  # noqa: E402
from .outpath import make_folder  # noqa: E402


def _save(fig, path) -> Path:
    # atomic: a full disk must not leave a truncated PNG under the figure's name. No
    # bbox_inches="tight": it draws the figure twice; the layouts below leave their own margins.
    path = Path(path)
    try:
        fmt = figure_format(path)  # matplotlib's own refusal is a ValueError and a traceback
        make_folder(path.parent)
        return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=100))
    except OSError as e:
        raise DigitsError(f"cannot create {path.parent}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _mosaic(images: torch.Tensor, cols: int, gap: int) -> np.ndarray:
    """Images (N, 1, 28, 28) uint8 tiled into one array, ``gap`` blank pixels above each row."""
    rows = max(1, -(-len(images) // cols))
    canvas = np.zeros((rows * (28 + gap), cols * 29), dtype=np.uint8)
    tiles = images.reshape(-1, 28, 28).cpu().numpy()
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * (28 + gap) + gap:(r + 1) * (28 + gap), c * 29:c * 29 + 28] = tile
    return canvas


def _image_grid(images: torch.Tensor, titles: list[str], cols: int, path, colors=None,
                cmap: str = "gray_r", suptitle: str | None = None) -> Path:
    # One image of all tiles in one axes: 60 axes took 0.7 s of CPU to draw, this ~0.1 s.
    gap = 9 if titles else 1
    canvas = _mosaic(images, cols, gap)
    rows = canvas.shape[0] // (28 + gap)
    head = 0.45 if suptitle else 0.1
    fig = plt.figure(figsize=(cols * 0.95, rows * (0.95 + gap / 40) + head))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - head / fig.get_figheight() - 0.01))
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=255, interpolation="nearest", aspect="equal")
    ax.axis("off")
    for i, title in enumerate(titles):
        r, c = divmod(i, cols)
        ax.text(c * 29 + 14, r * (28 + gap) + gap - 1, title, ha="center", va="bottom", fontsize=8,
                color=colors[i] if colors else "black")
    if suptitle:
        fig.suptitle(suptitle, y=1 - 0.12 / fig.get_figheight(), va="top")
    return _save(fig, path)


def plot_samples(images: torch.Tensor, path, labels: torch.Tensor | None = None) -> Path:
    """The first 60 images in a 6x10 grid, dark ink on white (the tutorial's Fig. 4)."""
    images = images[:60]
    titles = [str(int(v)) for v in labels[:60]] if labels is not None else []
    return _image_grid(images, titles, 10, path)


def plot_training_curves(history, path) -> Path:
    """Loss per step, training accuracy per 10 batches and validation accuracy per epoch (Figs. 5-7)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.92, wspace=0.22)
    axes[0].plot(range(1, len(history.loss) + 1), history.loss, lw=0.8)
    axes[0].set(title="Loss/train", xlabel="iteration", ylabel="cross-entropy loss")
    if history.train_acc_10:
        steps, acc = zip(*history.train_acc_10)
        axes[1].plot(steps, [100 * a for a in acc], lw=0.8)
    axes[1].set(title="train accuracy per 10 batches", xlabel="iteration", ylabel="accuracy (%)")
    epochs = range(1, len(history.val_acc) + 1)
    axes[2].plot(epochs, [100 * a for a in history.val_acc], marker="o")
    axes[2].set(title="validation accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    if history.val_acc:
        axes[2].set_xticks(list(epochs))
    else:
        axes[2].text(0.5, 0.5, "no validation split (--val-size 0)", ha="center", transform=axes[2].transAxes)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(confusion: torch.Tensor, path, title: str = "Confusion matrix") -> Path:
    """Heat map with every count written in and the diagonal outlined in red (Fig. 9)."""
    cm = confusion.cpu().numpy()
    n = cm.shape[0]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.09, top=0.94)
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set(xticks=range(n), yticks=range(n), xlabel="Predicted class", ylabel="True class", title=title)
    threshold = cm.max() / 2 if cm.size else 0
    for t in range(n):
        for p in range(n):
            ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=8,
                    color="white" if cm[t, p] > threshold else "black",
                    weight="bold" if t == p else "normal")
        ax.add_patch(plt.Rectangle((t - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    return _save(fig, path)


def plot_predictions(images: torch.Tensor, predictions: torch.Tensor, labels: torch.Tensor, path,
                     title: str = "Predicted (true) on test images") -> Path:
    """Images with predicted and true labels, wrong ones in red (Fig. 8)."""
    titles = [f"{int(p)} ({int(t)})" for p, t in zip(predictions, labels)]
    colors = ["black" if int(p) == int(t) else "red" for p, t in zip(predictions, labels)]
    return _image_grid(images, titles, 8, path, colors, suptitle=title)


def plot_misclassified(images: torch.Tensor, predictions: torch.Tensor, labels: torch.Tensor, path,
                       limit: int = 40) -> Path:
    """Up to ``limit`` misclassified images, titled "predicted (true)"."""
    wrong = (predictions != labels).nonzero().flatten()[:limit]
    title = f"Misclassified: {int((predictions != labels).sum())} of {len(labels)}, predicted (true)"
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified images", ha="center")
        return _save(fig, path)
    return plot_predictions(images[wrong], predictions[wrong], labels[wrong], path, title=title)


def plot_inputs(images: torch.Tensor, titles: list[str], path, cols: int = 8) -> Path:
    """Preprocessed user images (what the model saw), each titled with its prediction."""
    return _image_grid(images, titles, min(cols, max(1, len(images))), path)


def plot_comparison(summary: list[dict], path, title: str = "") -> Path:
    """Mean validation and test accuracy per model as bars, one standard deviation as error bars. A
    mean that is NaN (no validation split) is an empty bar labelled n/a, and a series no model has is
    not drawn (nor named in the legend)."""
    names = [s["model"] for s in summary]
    x = range(len(names))
    width, height = max(5, 1.4 * len(names) + 2), 4
    fig, ax = plt.subplots(figsize=(width, height))
    # margins in inches: the y label and its tick labels take about 0.7 in, however few the models
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.15 / width, bottom=0.45 / height, top=1 - 0.4 / height)
    series = [(key, label, color) for key, label, color in (("val_accuracy", "validation", "C0"),
                                                            ("test_accuracy", "test", "C1"))
              if any(s[key] == s[key] for s in summary)]
    bar = 0.8 / max(1, len(series))
    for n, (key, label, color) in enumerate(series):
        offset = (n - (len(series) - 1) / 2) * bar
        has = [s[key] == s[key] for s in summary]  # NaN != NaN; a NaN bar squashed the x axis
        means = [100 * s[key] if h else 0.0 for s, h in zip(summary, has)]
        # NaN draws no error bar (one run has no spread); 0 drew a bar's caps on top of it
        stds = [100 * s[key + "_std"] if h else math.nan for s, h in zip(summary, has)]
        bars = ax.bar([i + offset for i in x], means, bar, yerr=stds, capsize=4, label=label, color=color)
        ax.bar_label(bars, labels=[f"{m:.2f}" if h else "" for m, h in zip(means, has)], fontsize=7, padding=2)
        for i, h in zip(x, has):  # where the bar would stand, above the legend in the lower left
            if not h:
                ax.text(i + offset, 0.5, "n/a", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        fontsize=7)
    values = [100 * s[k] for s in summary for k in ("val_accuracy", "test_accuracy") if s[k] == s[k]]
    low = min(values, default=0.0)  # NaN (no validation split) is left out
    ax.set_ylim(max(0.0, low - 1.0), 100.4)  # accuracies differ in the last percent: zoom there
    ax.set_xticks(list(x), names)
    spread = any(s[k + "_std"] == s[k + "_std"] for s in summary for k, _, _ in series)
    ax.set(ylabel="accuracy (%), mean +- std over seeds" if spread else "accuracy (%)",
           title=title or "Model comparison")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
