"""Unseen classes: learn an embedding on digits 0-4 of the training split, then classify digits
5-9 of the test set from k examples each, by nearest prototype, beside raw pixels.

    result, model = unseen_classes(data, FewShotConfig(), torch.device("cpu"))
"""
from __future__ import annotations

import time

import torch

from ..config import FewShotConfig
from ..data import MNIST
from .baselines import pixels
from .curve import parse_counts
from .episodes import episode_accuracies, percent_pm, summary
from .loop import quiet
from .protonet import embed, train_embedding

SEEN, UNSEEN = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]


def unseen_classes(data: MNIST, cfg: FewShotConfig, device: torch.device, log=quiet
                   ) -> tuple[dict, torch.nn.Module]:
    """The embedding (trained on SEEN only) and its accuracy on UNSEEN episodes per shot count."""
    start = time.perf_counter()
    model, losses = train_embedding(data.train, SEEN, cfg, device)
    seconds = time.perf_counter() - start
    keep = torch.isin(data.test.labels.cpu(), torch.tensor(UNSEEN))
    images, labels = data.test.images.cpu()[keep], data.test.labels.cpu()[keep]
    features = {"embedding": embed(model, images), "pixels": pixels(images)}
    rows = []
    for shots in parse_counts(cfg.eval_shots):
        accs = episode_accuracies(features, labels, UNSEEN, shots, cfg.queries, cfg.episodes,
                                  seed=cfg.seed * 1000 + shots)
        rows.append({"shots": shots, "embedding": summary(accs["embedding"]),
                     "pixels": summary(accs["pixels"])})
        e, p = rows[-1]["embedding"], rows[-1]["pixels"]
        log(f"unseen 5-way {shots}-shot (%): embedding {percent_pm(e, 'ci95', '+-')}, "
            f"raw-pixel class mean {percent_pm(p, 'ci95', '+-')}")
    result = {"train_classes": SEEN, "test_classes": UNSEEN, "ways": len(UNSEEN),
              "queries_per_class": cfg.queries, "episodes": cfg.episodes, "train_seconds": seconds,
              "train_episodes": cfg.train_episodes, "final_train_loss": _tail_mean(losses), "rows": rows}
    return result, model


def _tail_mean(losses: list[float], n: int = 50) -> float | None:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None
