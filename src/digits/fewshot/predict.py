"""`digits fewshot-predict`: classify images by nearest prototype, with classes given by folders of
example images (one sub-folder per class, any names) and an embedding checkpoint.

    model = load_embedding("docs/fewshot/embedding.pt")
    support = load_support("my-symbols/")                  # images, labels, class names
    queries = load_queries(["a.png", "more/"])             # files, images, errors (as digits predict)
    predictions = predict(model, support, queries.images)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, DigitsError, ImageError
from ..predict import expand_paths, file_error
from ..preprocess import IMAGE_SUFFIXES, preprocess
from .baselines import class_means, squared_distances
from .protonet import embed


def load_image(path: str | Path) -> torch.Tensor:
    """One image file -> uint8 (1, 28, 28), made MNIST-like by digits.preprocess (as predict does)."""
    try:
        pixels = preprocess(path)
    except ImageError as e:
        raise DigitsError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return torch.from_numpy(pixels.copy()).view(1, 28, 28)


def load_images(paths: list[str | Path]) -> torch.Tensor:
    """uint8 images (N, 1, 28, 28) from image files, in order."""
    return torch.stack([load_image(p) for p in paths])


@dataclass
class Queries:
    files: list[str]  # the files read, in order: one per image
    images: torch.Tensor  # (N, 1, 28, 28) uint8; N may be 0
    errors: list[tuple[str, str]]  # (file, message), as in digits.predict.PredictResult


def load_queries(paths: list[str | Path]) -> Queries:
    """The image files under ``paths``, a folder read for its images as `digits predict` reads it
    (recursively, by suffix); a path missing or a file unreadable becomes an error of its own and
    the others are still read."""
    files, errors = expand_paths(paths)
    read, images = [], []
    for path in files:
        try:
            images.append(load_image(path))
        except DigitsError as e:
            errors.append(file_error(path, e))
        else:
            read.append(str(path))
    stacked = torch.stack(images) if images else torch.empty((0, 1, 28, 28), dtype=torch.uint8)
    return Queries(read, stacked, errors)


@dataclass
class Support:
    images: torch.Tensor  # (N, 1, 28, 28) uint8
    labels: torch.Tensor  # (N,) positions in ``classes``
    classes: list[str]  # sub-folder names, sorted


def load_support(folder: str | Path) -> Support:
    """Every image file under each sub-folder of ``folder`` (recursively, as `digits predict` reads
    a folder); the sub-folder's name is its class. Names starting with "." are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise DigitsError(f"--support {folder}: {what}; give a folder with one sub-folder of "
                          "example images per class")
    # hidden names (.ipynb_checkpoints, macOS's ._a.png) are not classes or images, as in `digits predict`
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DigitsError(f"--support {folder}: found {len(classes)} class sub-folder(s); need at least 2 "
                          "(one sub-folder of example images per class)")
    images, labels = [], []
    for i, name in enumerate(classes):
        # read as `digits predict` reads a folder: its image files, in sub-folders too (one named
        # like an image, x.png/, is a folder to look in, not an image), dot-names skipped
        files, _ = expand_paths([folder / name])
        if not files:
            raise DigitsError(f"--support {folder / name}: no images in this class folder; add at least "
                              f"one ({', '.join(sorted(IMAGE_SUFFIXES))})")
        images += [load_image(f) for f in files]
        labels += [i] * len(files)
    return Support(torch.stack(images), torch.tensor(labels), classes)


def load_embedding(path: str | Path) -> torch.nn.Module:
    """The embedding network of a checkpoint written by `digits fewshot`; refuses classifiers."""
    model, ckpt = load_checkpoint(path)
    if ckpt["meta"].get("task") != "embedding" or getattr(model, "task", None) != "embedding":
        raise CheckpointError(f"{path}: a {ckpt['meta']['model_name']!r} classifier, not a few-shot "
                              "embedding; use the embedding.pt that `digits fewshot --out DIR` writes")
    return model


@dataclass
class Prediction:
    classes: list[int]  # (N,) position of the nearest prototype
    distances: torch.Tensor  # (N, classes) squared distances to every prototype
    probs: torch.Tensor  # (N, classes) softmax of minus the distances


def predict(model: torch.nn.Module, support: Support, queries: torch.Tensor) -> Prediction:
    """Nearest prototype (class mean of the support embeddings) for each query image."""
    prototypes = class_means(embed(model, support.images), support.labels, len(support.classes))
    distances = squared_distances(embed(model, queries), prototypes)
    return Prediction(distances.argmin(1).tolist(), distances, (-distances).softmax(1))
