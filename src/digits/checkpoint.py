"""Self-describing checkpoints: weights plus everything needed to rebuild and use the model.

A checkpoint holds what the tutorial saves (``iter_num``, ``optimizer``, ``model``) and ``meta``:
model name and arguments, normalisation, class names, resolved config, versions and metrics.
Files are written atomically and read with ``weights_only=True`` (no code runs on load).

    save_checkpoint(path, model, meta=..., optimizer=opt, iter_num=470)
    model, ckpt = load_checkpoint(path)        # model in eval mode; ckpt["meta"] describes it
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data import CLASSES, MEAN, STD
from .errors import CheckpointError, DigitsError
from .models import create_model

FORMAT = "digits-checkpoint"
VERSION = 1


def describe(model_name: str, model_kwargs: dict, config: dict | None = None, **extra) -> dict:
    """The JSON-able description stored as ``meta`` in every checkpoint."""
    return {"model_name": model_name, "model_kwargs": dict(model_kwargs),
            "normalization": {"mean": MEAN, "std": STD}, "classes": list(CLASSES),
            "config": config or {}, "digits_version": __version__,
            "torch_version": str(torch.__version__), **extra}


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict, **state: Any) -> Path:
    """Write weights, ``meta`` and any extra state (optimizer, iter_num, ...) atomically."""
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {"format": FORMAT, "version": VERSION, "meta": meta,
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **state}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DigitsError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dictionary, validated; never executes code stored in the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError,
            AttributeError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable digits checkpoint ({_reason(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "meta" not in ckpt:
        raise CheckpointError(f"{path}: not a digits checkpoint (no '{FORMAT}' header); "
                              "train one with `digits run` or `digits train`")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer digits (format {ckpt['version']}); upgrade")
    return ckpt


def _reason(error: Exception) -> str:
    text = str(error)
    if "WeightsUnpickler error:" in text:  # the file asks to run code: refused, and say so
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
        return f"refused: it holds objects other than tensors and plain data; {detail[:160]}"
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint describes, load its weights, and return it in eval mode."""
    ckpt = read_checkpoint(path, map_location)
    meta = ckpt["meta"]
    model = create_model(meta["model_name"], **meta.get("model_kwargs", {}))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit model {meta['model_name']!r} "
                              f"({str(e).splitlines()[0][:200]})") from None
    return model.to(map_location).eval(), ckpt
