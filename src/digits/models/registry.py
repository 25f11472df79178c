"""The model registry: every network is registered by name and built from keyword arguments.

    @register_model("seed")
    def seed(): ...
    model = create_model("seed")
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import DigitsError

_REGISTRY: dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(name: str):
    def add(builder: Callable[..., torch.nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder
    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> torch.nn.Module:
    """Build a registered model; it takes images (N, 1, 28, 28) and returns logits (N, 10)."""
    if name not in _REGISTRY:
        raise DigitsError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    try:
        model = _REGISTRY[name](**kwargs)
        if kwargs:  # arguments can build a network that fails only when used (e.g. zero channels)
            _trial_forward(model)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DigitsError(f"bad arguments for model {name!r}: {e}".splitlines()[0]) from None
    return model


def _trial_forward(model: torch.nn.Module) -> None:
    was_training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 28, 28))  # eval: batch norm takes a batch of one
    model.train(was_training)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def is_embedding(model: torch.nn.Module) -> bool:
    """Few-shot's protonet and its kind: vectors to compare, not 10 class scores."""
    return bool(getattr(model, "embedding_dim", None))


def check_classifier(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """The model itself if it returns 10 logits; an embedding (few-shot's protonet) is refused:
    trained, evaluated or asked for digits as a classifier, its vectors would mean nothing."""
    if is_embedding(model):
        raise DigitsError(f"model {name!r} is an embedding for `digits fewshot`, not a classifier; "
                          "choose another model (`digits models` lists them)")
    return model

