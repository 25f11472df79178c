"""`digits fewshot-predict`: classify images by nearest prototype, with classes given by folders of
example images (one sub-folder per class, any names) and an embedding checkpoint.

    model = load_embedding("docs/fewshot/embedding.pt")
    support = load_support("my-symbols/")                  # images, labels, class names
    predictions = predict(model, support, load_images(["a.png", "b.png"]))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, DigitsError
from .baselines import class_means, squared_distances
from .protonet import embed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".pbm"}


def load_image(path: str | Path) -> torch.Tensor:
    """One image file -> uint8 (1, 28, 28), white digit on black as in MNIST.

    The one place that turns user files into MNIST-style images: it uses digits.preprocess (the
    predict issue's centring and scaling) when that module exists, else a plain fallback."""
    try:
        from ..preprocess import preprocess_image
    except ImportError:
        return _fallback_image(Path(path))
    return preprocess_image(path)


def _fallback_image(path: Path) -> torch.Tensor:
    """Grey, resize to 28x28, and invert when the background is light (dark ink on paper)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise DigitsError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DigitsError(f"{path}: not a readable image ({e})") from None
    pixels = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).view(1, 28, 28)
    border = torch.cat([pixels[0, 0], pixels[0, -1], pixels[0, :, 0], pixels[0, :, -1]])
    return 255 - pixels if border.float().mean() > 127 else pixels


def load_images(paths: list[str | Path]) -> torch.Tensor:
    """uint8 images (N, 1, 28, 28) from image files, in order."""
    return torch.stack([load_image(p) for p in paths])


@dataclass
class Support:
    images: torch.Tensor  # (N, 1, 28, 28) uint8
    labels: torch.Tensor  # (N,) positions in ``classes``
    classes: list[str]  # sub-folder names, sorted


def load_support(folder: str | Path) -> Support:
    """Every image in each sub-folder of ``folder``; the sub-folder's name is its class."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DigitsError(f"--support {folder}: no such folder; give a folder with one sub-folder of "
                          "example images per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DigitsError(f"--support {folder}: found {len(classes)} class sub-folder(s); need at least 2 "
                          "(one sub-folder of example images per class)")
    images, labels = [], []
    for i, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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
