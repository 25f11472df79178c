"""Which torch device a run uses and how many CPU threads: one place for the training, evaluation,
prediction and few-shot paths, so that predicting never imports the training loop.

    device = resolve_device("auto")   # cuda if present, else mps, else cpu
"""
from __future__ import annotations

import torch

from .errors import DigitsError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DigitsError(f"--device {name}: CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DigitsError("--device mps: Apple's MPS backend is not available on this machine")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DigitsError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and device.index is not None and device.index >= count:  # else: a traceback later
        raise DigitsError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def set_threads(threads: int) -> None:
    """torch's CPU threads; 0 keeps its default (one per core)."""
    if threads < 0:
        raise DigitsError(f"--threads must not be negative, got {threads}")
    if threads:
        torch.set_num_threads(threads)
