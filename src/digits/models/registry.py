"""The model registry: every network is registered by name and built from keyword arguments,
checked first against the builder's signature (an int argument is a size: at least 1).

    @register_model("seed")
    def seed(): ...
    model = create_model("seed")
"""
from __future__ import annotations

import inspect
import json
import math
import warnings
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
    problem = _argument_problem(_REGISTRY[name], kwargs)
    if problem:
        raise DigitsError(f"bad arguments for model {name!r}: {problem}")
    try:
        with warnings.catch_warnings():  # torch's 2-line warning above the one-line error (zero sizes)
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            model = _REGISTRY[name](**kwargs)
            if kwargs:  # arguments can build a network that fails only when used (e.g. a kernel too large)
                _trial_forward(model)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DigitsError(f"bad arguments for model {name!r}: {e}".splitlines()[0]) from None
    return model


def _argument_problem(builder: Callable[..., torch.nn.Module], kwargs: dict) -> str | None:
    """What is wrong with ``kwargs`` for ``builder``, from its signature, naming the argument and the
    value (--model-arg's values are JSON, or the text as given): an unknown name; a size (an int
    argument: widths, channels, depth) that is not a whole number of at least 1, which torch
    answered with a warning and a message about tensor shapes, or, for c1=abc, "not all arguments
    converted during string formatting"; a float that is no finite number; a bool that is not one."""
    params = inspect.signature(builder).parameters
    for key, value in kwargs.items():
        if key not in params:
            takes = ", ".join(params) or "none"
            return f"it takes no argument {key!r} (its arguments: {takes})"
        kind = params[key].annotation
        kind = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"{key} must be a whole number of at least 1, got {_shown(value)}"
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not math.isfinite(value)):
            return f"{key} must be a number, got {_shown(value)}"
        if kind == "bool" and not isinstance(value, bool):
            return f"{key} must be true or false, got {_shown(value)}"
    return None


def _shown(value) -> str:
    """A value as --model-arg takes it (JSON: true, null), text in quotes; at most 40 characters."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # (from Python, not the command line: say, NaN or an object)
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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

