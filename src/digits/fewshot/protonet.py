"""A prototypical network: an embedding trained on episodes so that an image lies nearest to the
mean embedding (prototype) of its class's few examples. Trained on some classes, used on others.

    model = train_embedding(data.train, classes=[0, 1, 2, 3, 4], cfg=FewShotConfig(), device=cpu)
    features = embed(model, images)                       # (N, 64)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import FewShotConfig
from ..data import Split, normalize, seed_value
from ..evaluate import predict_logits
from ..models import create_model
from .augment import random_affine
from .baselines import class_means, squared_distances
from .loop import optimise
from .subsets import sample_episode

EMBEDDING_MODEL = "protonet"


def prototype_logits(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                     ways: int) -> torch.Tensor:
    """(len(query), ways) logits: minus the squared distance to each class's prototype."""
    return -squared_distances(query, class_means(support, support_labels, ways))


def train_embedding(train: Split, classes: list[int], cfg: FewShotConfig, device: torch.device
                    ) -> tuple[torch.nn.Module, list[float]]:
    """Train the embedding on ``cfg.train_episodes`` episodes drawn from ``classes`` of ``train``
    (``cfg.train_shots`` support and ``cfg.queries`` query images per class, augmented)."""
    torch.manual_seed(seed_value(cfg.seed))
    model = create_model(EMBEDDING_MODEL).to(device)
    keep = torch.isin(train.labels.cpu(), torch.tensor(classes))
    images, labels = train.images.cpu()[keep], train.labels.cpu()[keep]
    generator = torch.Generator().manual_seed(seed_value(cfg.seed))
    ways = len(classes)

    def step_loss(step: int) -> torch.Tensor:
        episode = sample_episode(labels, classes, cfg.train_shots, cfg.queries, generator)
        batch = images[torch.cat([episode.support, episode.query])].to(device).float()
        if cfg.augment:
            batch = random_affine(batch, generator)
        features = model(normalize(batch))
        support, query = features[:len(episode.support)], features[len(episode.support):]
        logits = prototype_logits(support, episode.support_labels.to(device), query, ways)
        return F.cross_entropy(logits, episode.query_labels.to(device))

    losses = optimise(model, cfg.train_episodes, cfg.lr, step_loss, cfg.progress, desc="episodes")
    return model, losses


def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(N, D) embeddings of uint8 images (N, 1, 28, 28), on the CPU."""
    return predict_logits(model, images, batch_size).cpu()
