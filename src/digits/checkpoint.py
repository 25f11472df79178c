"""Self-describing checkpoints: weights plus everything needed to rebuild and use the model.

A checkpoint holds what the tutorial saves (``iter_num``, ``optimizer``, ``model``) and ``meta``:
model name and arguments, normalisation, class names, resolved config, versions and metrics.
Files are written atomically, carry a SHA-256 of their contents (a damaged file is refused rather
than loaded with silently wrong weights) and are read with ``weights_only=True`` (no code runs on load).

    save_checkpoint(path, model, meta=..., optimizer=opt, iter_num=470)
    model, ckpt = load_checkpoint(path)        # model in eval mode; ckpt["meta"] describes it
"""
from __future__ import annotations

import hashlib
import math
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import atomic_write
from .data import CLASSES, MEAN, STD
from .errors import CheckpointError, DigitsError
from .filekind import DAMAGED, refuse_other_files
from .models import create_model
from .models.registry import is_embedding

FORMAT = "digits-checkpoint"
VERSION = 2  # 2 added "sha256"; version 1 files (no checksum) still load
ALL_TRAINED = "trained on all 60,000 training images, so no validation images are held out; use --split test"


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
    payload["sha256"] = digest(payload)
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dictionary, validated; never executes code stored in the file."""
    path = Path(path)
    refuse_other_files(path)
    try:
        with warnings.catch_warnings():  # e.g. a pickle of protocol 4: two lines above the error
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  damaged bytes raise many types here: OSError (EINVAL on a
        # truncated zip), RuntimeError, UnpicklingError, EOFError, ValueError, KeyError, ...
        raise CheckpointError(f"{path}: not a readable digits checkpoint ({_reason(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "meta" not in ckpt:
        raise CheckpointError(f"{path}: not a digits checkpoint (no '{FORMAT}' header); "
                              "train one with `digits run` or `digits train`")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: written by a newer digits (format {version}); upgrade")
    if version >= 2 and ckpt.get("sha256") != _digest_of(path, ckpt):
        raise CheckpointError(f"{path}: damaged (its contents do not match the checksum stored in it); "
                              "use another copy or train again")
    _check_layout(path, ckpt)
    _check_normalization(path, ckpt["meta"])
    return ckpt


def _check_layout(path: Path, ckpt: dict) -> None:
    meta, weights = ckpt["meta"], ckpt.get("model")
    if not (isinstance(meta, dict) and isinstance(meta.get("model_name"), str)
            and isinstance(meta.get("model_kwargs", {}), dict)):
        raise CheckpointError(f"{path}: its description does not name a model; not a usable checkpoint")
    if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())):
        raise CheckpointError(f"{path}: holds no model weights; not a usable checkpoint")
    if not all(isinstance(k, str) for k in weights):
        raise CheckpointError(f"{path}: its weights are not all named by strings; not a usable checkpoint")
    odd = next(filter(None, map(_unusual, weights.values())), None)
    if odd:  # load_state_dict would fail on it with another exception type, or copy nothing
        raise CheckpointError(f"{path}: its weights include {odd}; not a usable checkpoint")


def _check_normalization(path: Path, meta: dict) -> None:
    """Refuse weights trained on inputs normalised otherwise: digits feeds every model data.MEAN and
    STD, so they would predict wrongly without any error. Files that record none (older ones) load."""
    if "normalization" not in meta:
        return
    recorded = meta["normalization"]
    if isinstance(recorded, dict):
        mean, std = _one_number(recorded.get("mean")), _one_number(recorded.get("std"))
        if None not in (mean, std) and all(math.isclose(a, b, abs_tol=1e-6)  # float32 copies: ~1e-8 off
                                           for a, b in ((mean, MEAN), (std, STD))):
            return
        holds = (f"normalises its inputs with mean {_shown(recorded.get('mean'))} "
                 f"and std {_shown(recorded.get('std'))}")
    else:
        holds = f"records its normalization as {repr(recorded)[:60]}"
    raise CheckpointError(f"{path}: {holds}, but digits uses mean {MEAN} and std {STD}, so its predictions "
                          "here would be wrong; use a checkpoint trained by digits")


def _one_number(value) -> float | None:
    """A finite number, alone or as the one channel of a list (torchvision's Normalize((m,), (s,)))."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _shown(value) -> str:
    number = _one_number(value)
    return f"{number:g}" if number is not None else repr(value)[:40]


def _unusual(tensor: torch.Tensor) -> str | None:
    """What makes ``tensor`` unlike the dense tensors digits saves, or None."""
    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    if tensor.is_meta:
        return "a tensor without data (device 'meta')"
    return None


def _digest_of(path: Path, ckpt: dict) -> str:
    try:
        return digest(ckpt)
    except (ValueError, RuntimeError, NotImplementedError) as e:  # RuntimeError: RecursionError too
        raise CheckpointError(f"{path}: holds data no digits checkpoint contains ({_reason(e)}); "
                              "not a usable checkpoint") from None


def digest(payload: dict) -> str:
    """SHA-256 of everything in a checkpoint but its own "sha256" entry: tensors by dtype, shape and
    bytes, plain values by type and repr, in stored order (pickle keeps dictionary order)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        if odd := _unusual(value):  # a sparse or data-less tensor has no bytes to view
            raise ValueError(odd)
        # conjugate and negative views must be resolved before their bytes can be viewed
        t = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        h.update(f"{{{len(value)}|".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}|".encode())
        for v in value:
            _feed(h, v)
    else:
        text = repr(sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value)
        h.update(f"{type(value).__name__}{len(text)}|{text}".encode())


def _reason(error: Exception) -> str:
    """Why torch could not read a file, in a few whole words: a sentence of its message is shown
    whole or not at all (it was cut at 200 characters, mid-sentence)."""
    text = str(error)
    # the file asks to run code (or to build what the safe loader does not): refused, and say so
    if text.startswith("Weights only load failed") or "WeightsUnpickler error:" in text:
        detail = _unpickler_message(error, text)
        if detail.startswith("Unsupported operand"):  # an opcode outside the safe loader's subset
            opcode = detail.removeprefix("Unsupported operand").strip()
            return f"refused: its pickled data uses pickle opcode {opcode}, which PyTorch's safe loader does not run"
        if "GLOBAL " in detail:  # the class or function the file names, or garbage: a damaged file
            found = re.search(r"GLOBAL (.*?) (was not an allowed global|whose module)", detail)
            if not found or not _PYTHON_NAME.fullmatch(found[1]):
                return DAMAGED
            detail = f"it asks for {found[1]}, which PyTorch's safe loader does not load"
        if not detail.isprintable():  # raw bytes of a damaged file: not for the terminal
            return DAMAGED
        return ("refused: it holds objects other than tensors and plain data"
                + (f"; {detail}" if 0 < len(detail) <= 160 else ""))
    if (isinstance(error, (EOFError, struct.error)) or "central directory" in text
            or text.startswith("unexpected EOF")):  # the last: torch's older format, cut short
        return DAMAGED
    if "Invalid magic number" in text:  # a pickle, but not the magic number torch.save starts with
        return "a pickle, but not one torch.save wrote"
    sentence = _first_sentence(text)
    if sentence.startswith("PytorchStreamReader failed"):  # a zip entry that does not read back
        return f"damaged: {sentence.removeprefix('PytorchStreamReader ')}"
    return sentence if 0 < len(sentence) <= 200 else type(error).__name__


# what a pickle's GLOBAL opcode names: a class or function, as Python identifiers, dotted or not
_PYTHON_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _unpickler_message(error: Exception, text: str) -> str:
    """The first sentence of the safe loader's own message. torch wraps it in advice worded four
    ways in 2.13; two name no "WeightsUnpickler error:" (a blocked module such as posix, and a
    module to import first), but every wrapper is raised ``from None``, which keeps it as the context."""
    inner = error.__context__
    if isinstance(inner, pickle.UnpicklingError):
        return _first_sentence(str(inner))
    return _first_sentence(text.split("WeightsUnpickler error:", 1)[1]) if "WeightsUnpickler error:" in text else ""


def _first_sentence(text: str) -> str:
    """The first sentence of the first line of ``text``, without c10's "[enforce fail at FILE:LINE] ." prefix."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", line)
    return line.split(". ", 1)[0].rstrip(".")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint describes, load its weights, and return it in eval mode."""
    ckpt = read_checkpoint(path, map_location)
    meta = ckpt["meta"]
    try:
        model = create_model(meta["model_name"], **meta.get("model_kwargs", {}))
    except (DigitsError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its model ({str(e).splitlines()[0][:200]}); "
                              "it was written by another version of digits or for another model") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise CheckpointError(f"{path}: weights do not fit model {meta['model_name']!r} "
                              f"({_mismatch(model, ckpt['model']) or lines[-1][:200]})") from None
    return model.to(map_location).eval(), ckpt


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[torch.nn.Module, dict]:
    """load_checkpoint for the commands that need 10 class scores (evaluate, predict, serve, export):
    a few-shot embedding is refused, pointing at the command that uses one."""
    model, ckpt = load_checkpoint(path, map_location)
    if is_embedding(model):
        raise CheckpointError(f"{path}: model {ckpt['meta']['model_name']!r} is an embedding for few-shot "
                              "classification, not a digit classifier; use it with "
                              f"`digits fewshot-predict {path} --support DIR --query PATH...`")
    return model, ckpt


def _mismatch(model: torch.nn.Module, weights: dict) -> str:
    """What differs between a model's tensors and a checkpoint's, in a few words."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    parts = []
    for label, keys in (("missing", [k for k in expected if k not in found]),
                        ("unexpected", [k for k in found if k not in expected]),
                        ("other shape", [k for k in expected if k in found and expected[k] != found[k]])):
        if keys:
            parts.append(f"{label}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}")
    return "; ".join(parts)


def held_out_split(named: list[tuple[str, dict]], val_size: int | None = None,
                   split_seed: int | None = None) -> tuple[int, int]:
    """The validation split, as (val_size, split_seed), that the checkpoints ``(path, ckpt)`` were
    trained without: read from each one's recorded config. The values given here stand in for what a
    checkpoint does not record (another writer's, or one from before configs were saved); one that
    records another split is refused, since other images would include some it was trained on.
    Evaluating an ensemble is fair only if every member held out the same images, so checkpoints that
    disagree, or record nothing and were given nothing, or held out no images, are refused."""
    if val_size is not None and val_size <= 0:
        raise DigitsError(f"--val-size must be positive to evaluate on validation images, got {val_size}")
    seen = {}
    for path, ckpt in named:
        config = ckpt["meta"].get("config")
        data = config.get("data") if isinstance(config, dict) else None
        data = data if isinstance(data, dict) else {}  # a checkpoint of another writer records none
        _refuse_another_split(path, data.get("val_size"), data.get("split_seed"), val_size, split_seed)
        size = val_size if val_size is not None else data.get("val_size")
        seed = split_seed if split_seed is not None else data.get("split_seed")
        if size is None or seed is None:
            raise DigitsError(f"{path}: does not record its validation split; give --val-size and --split-seed")
        if not all(map(_whole, (size, seed))):
            raise DigitsError(f"{path}: records its validation split as {repr(size)[:40]} images, split "
                              f"seed {repr(seed)[:40]}, not two whole numbers; give --val-size and --split-seed")
        seen[(int(size), int(seed))] = path
    if len(seen) > 1:
        (a, pa), (b, pb) = list(seen.items())[:2]
        raise DigitsError(f"the checkpoints held out different validation splits ({pa}: {a[0]} images, "
                          f"split seed {a[1]}; {pb}: {b[0]} images, split seed {b[1]}); evaluate them apart")
    (size, seed), path = next(iter(seen.items()))
    if size <= 0:
        raise DigitsError(f"{path}: {ALL_TRAINED}")
    return size, seed


def _refuse_another_split(path: str, size, seed, val_size: int | None, split_seed: int | None) -> None:
    """Refuse --val-size or --split-seed values other than those a checkpoint records (whole numbers:
    anything else records nothing usable, and the given values stand in)."""
    differ = [f"{flag} {given}" for flag, given, recorded in (("--val-size", val_size, size),
                                                              ("--split-seed", split_seed, seed))
              if given is not None and _whole(recorded) and given != recorded]
    if not differ:
        return
    if _whole(size) and size <= 0:
        raise DigitsError(f"{path}: {ALL_TRAINED}")
    records = ", ".join(text for text, value in ((f"{size} images", size), (f"split seed {seed}", seed))
                        if _whole(value))
    raise DigitsError(f"{path}: records its validation split as {records}; {' and '.join(differ)} would "
                      "choose other images, some of which it was trained on; leave them out")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
