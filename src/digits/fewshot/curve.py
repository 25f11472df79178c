"""The learning curve: train a network from scratch on k images per class, for several k and
several seeded class-balanced subsets of the training split, beside two raw-pixel baselines.

    rows = learning_curve(data, FewShotConfig(shots="1,10"), torch.device("cpu"))
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..config import FewShotConfig
from ..data import MNIST, Split, normalize, seed_value
from ..errors import DigitsError
from ..evaluate import evaluate
from ..models import create_model
from .augment import random_affine
from .baselines import class_means, nearest_neighbour, nearest_prototype, pixels
from .loop import optimise, quiet
from .subsets import class_balanced_subset

FULL = "full"


def parse_counts(text: str, allow_full: bool = False) -> list:
    """"1,10,full" -> [1, 10, "full"]: positive integers (and "full" where allowed), in order."""
    counts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if allow_full and part == FULL:
            counts.append(FULL)
        elif part.isdigit() and int(part) > 0:
            counts.append(int(part))
        else:
            allowed = "positive integers or 'full'" if allow_full else "positive integers"
            raise DigitsError(f"bad count {part!r} in {text!r}: expected {allowed}, comma-separated")
    if not counts:
        raise DigitsError(f"no counts in {text!r}; give e.g. 1,10,100")
    return counts


def steps_for(n_images: int, cfg: FewShotConfig) -> int:
    """``cfg.epochs`` passes over the subset, kept within [min_steps, max_steps]."""
    return max(cfg.min_steps, min(cfg.max_steps, math.ceil(cfg.epochs * n_images / cfg.batch_size)))


def train_classifier(train: Split, cfg: FewShotConfig, seed: int, device: torch.device
                     ) -> torch.nn.Module:
    """A fresh ``cfg.model`` trained on ``train`` for ``steps_for(len(train))`` augmented batches."""
    torch.manual_seed(seed_value(seed))
    model = create_model(cfg.model).to(device)
    images, labels = train.images.to(device).float(), train.labels.to(device)
    generator = torch.Generator().manual_seed(seed_value(seed))

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=generator).to(device)
        batch = random_affine(images[idx], generator) if cfg.augment else images[idx]
        return F.cross_entropy(model(normalize(batch)), labels[idx])

    optimise(model, steps_for(len(labels), cfg), cfg.lr, step_loss, cfg.progress,
             desc=f"{len(labels)} images")
    return model


def _baselines(train: Split, test: Split) -> dict[str, float]:
    x, y, tx = pixels(train.images), train.labels, pixels(test.images)
    ncm = nearest_prototype(tx, class_means(x, y, 10))
    return {"nearest_neighbour": (nearest_neighbour(x, y, tx) == test.labels).float().mean().item(),
            "nearest_class_mean": (ncm == test.labels).float().mean().item()}


def curve_point(data: MNIST, k, subset: int, cfg: FewShotConfig, device: torch.device,
                baselines: dict | None = None) -> dict:
    """One (k, subset) cell: test accuracy of the trained network and of the baselines."""
    seed = cfg.seed * 1000 + subset
    if k == FULL:
        train = data.train
    else:
        idx = class_balanced_subset(data.train.labels, k, seed)
        train = Split(data.train.images[idx], data.train.labels[idx])
    start = time.perf_counter()
    model = train_classifier(train, cfg, seed, device)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, data.test.images, data.test.labels).accuracy
    return {"k": k, "subset": subset, "train_images": len(train), "steps": steps_for(len(train), cfg),
            "train_seconds": seconds, "network": accuracy, **(baselines or _baselines(train, data.test))}


def learning_curve(data: MNIST, cfg: FewShotConfig, device: torch.device, log=quiet) -> list[dict]:
    """Every (k, subset) cell; the full set's baselines do not depend on the subset: computed once."""
    cells = []
    for k in parse_counts(cfg.shots, allow_full=True):
        for subset in range(cfg.subsets):
            reuse = None
            if k == FULL and subset > 0:
                reuse = {name: cells[-1][name] for name in ("nearest_neighbour", "nearest_class_mean")}
            cells.append(curve_point(data, k, subset, cfg, device, reuse))
            c = cells[-1]
            log(f"k={k} subset {subset}: network {100 * c['network']:.2f}%, 1-NN "
                f"{100 * c['nearest_neighbour']:.2f}%, class mean {100 * c['nearest_class_mean']:.2f}% "
                f"({c['steps']} steps, {c['train_seconds']:.0f} s)")
    return cells
