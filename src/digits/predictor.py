"""A trained model ready for inference: a digits checkpoint (PyTorch) or an exported ONNX file.

Both backends take uint8 images (N, 1, 28, 28) as ``digits.preprocess`` makes them and return
logits (N, 10). The ONNX backend needs numpy and onnxruntime only, not torch: the exported graph
starts with the training normalisation (see ``digits.export``).

    predictor = load_predictor("runs/seed/checkpoint.pt")     # or "model.onnx"
    probs = predictor.probs(images)                           # float32 (N, 10), rows sum to 1
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import CheckpointError, DigitsError
from .filekind import PICKLE, ZIP, first_bytes, is_onnx, looks_like, refuse_other_files

META_KEY = "digits"  # ONNX metadata entry holding the checkpoint's description (JSON)


class Predictor:
    """Logits and probabilities for uint8 images (N, 1, 28, 28), and a description of the model."""

    def __init__(self, logits: Callable[[np.ndarray], np.ndarray], description: dict, backend: str):
        self._logits = logits
        self.description = description
        self.backend = backend

    def logits(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, 1, 28, 28)
        return np.asarray(self._logits(images), dtype=np.float32)

    def probs(self, images: np.ndarray) -> np.ndarray:
        logits = self.logits(images)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def load_predictor(path: str | Path, device: str = "cpu", threads: int | None = None) -> Predictor:
    """A digits checkpoint (.pt) or an ONNX export (.onnx), told apart by the file's first bytes
    whatever its name; a file named .onnx that holds neither is named for what it looks like.

    ``threads``: CPU threads per inference call; None keeps the backend's default. For one image
    at a time use 1: the seed network took 0.63 ms per image with 1 thread and 109 ms with 2 on a
    loaded 2-core machine (benchmarks/inference_facts.py). With torch this is process-wide."""
    if threads is not None and threads < 0:
        raise DigitsError(f"--threads must not be negative, got {threads}")
    path = Path(path)
    head = _first_bytes(path)
    if head is not None and is_onnx(head):
        return _onnx_predictor(path, threads)
    if path.suffix.lower() == ".onnx":
        if head is None:  # no such file, a folder: the ONNX loader names it
            return _onnx_predictor(path, threads)
        if not head.startswith((ZIP, PICKLE)):  # else a checkpoint under an ONNX name: read it as one
            what = looks_like(head) or "neither an ONNX model nor a digits checkpoint"
            raise CheckpointError(f"{path}: not an ONNX model ({what}); make one with `digits export`")
    return _torch_predictor(path, device, threads)


def _first_bytes(path: Path) -> bytes | None:
    try:
        return first_bytes(path, 512)
    except OSError:  # a folder, a missing file: the loaders name it
        return None


def _torch_predictor(path: Path, device: str, threads: int | None) -> Predictor:
    try:
        import torch
    except ImportError as e:  # ONNX models predict without torch, and the README says so
        refuse_other_files(path)  # a typo, a folder or a photo is named for what it is all the same
        needs = ("needs torch (pip install torch)" if e.name == "torch" else
                 f"needs torch, which failed to import ({str(e).splitlines()[0][:160]})")
        raise CheckpointError(f"{path}: reading a checkpoint {needs}; without torch, use an ONNX export "
                              f"of it, made where torch works: digits export {path} --out model.onnx") from None

    from .checkpoint import load_classifier
    from .evaluate import predict_logits
    from .models import count_parameters
    from .device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    model, ckpt = load_classifier(path, resolve_device(device))
    description = describe_checkpoint(path, ckpt, count_parameters(model))

    def logits(images: np.ndarray) -> np.ndarray:
        return predict_logits(model, torch.from_numpy(images)).cpu().numpy()

    return Predictor(logits, description, "pytorch")


def describe_checkpoint(path: Path, ckpt: dict, parameters: int) -> dict:
    """What GET /model shows: the checkpoint's description, its validation accuracy per epoch and
    the test metrics of its run (metrics.json beside it, when there is one)."""
    meta = ckpt["meta"]
    history = (ckpt.get("progress") or {}).get("history") or {}
    metrics = {"iterations": ckpt.get("iter_num"), "val_accuracy_per_epoch": history.get("val_acc")}
    run_metrics = path.with_name("metrics.json")
    if run_metrics.is_file():
        try:
            saved = json.loads(run_metrics.read_text())
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
            metrics.update({k: saved[k] for k in ("test_accuracy", "val_accuracy", "test_errors",
                                                  "train_seconds") if k in saved})
        except (OSError, ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            pass  # a damaged metrics.json only loses the test figures, not the model
    return {"file": path.name, "model_name": meta["model_name"], "model_kwargs": meta.get("model_kwargs", {}),
            "parameters": parameters, "classes": meta.get("classes"), "normalization": meta.get("normalization"),
            "digits_version": meta.get("digits_version"), "torch_version": meta.get("torch_version"),
            "config": meta.get("config", {}), "metrics": metrics}


def _onnx_predictor(path: Path, threads: int | None) -> Predictor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise CheckpointError("reading .onnx models needs onnxruntime: pip install onnxruntime") from None
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
    if threads:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise CheckpointError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:160]}); "
                              "make one with `digits export`") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(uint8)" or not _any_batch_of_28x28(inputs[0].shape):
        found = _describe_input(inputs[0]) if len(inputs) == 1 else f"{len(inputs)} inputs"
        raise CheckpointError(f"{path}: expected one uint8 input (N, 1, 28, 28) as `digits export` "
                              f"writes, got {found}; this model was not exported by digits")
    outputs = session.get_outputs()
    if len(outputs) != 1 or outputs[0].shape[-1:] != [10]:
        raise CheckpointError(f"{path}: expected 10 class scores per image as `digits export` writes, "
                              f"got output shape {outputs[0].shape if outputs else None}")
    name = inputs[0].name
    description = _stored_description(session)
    description["file"] = path.name

    def logits(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: images})[0]

    return Predictor(logits, description, "onnxruntime")


def _any_batch_of_28x28(shape: list) -> bool:
    """(N, 1, 28, 28) with N free (a name or None): a fixed batch fails for any other count."""
    return len(shape) == 4 and not isinstance(shape[0], int) and list(shape[1:]) == [1, 28, 28]


def _describe_input(node) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in node.shape)
    return f"{node.type.removeprefix('tensor(').removesuffix(')')} ({dims})"


def _stored_description(session) -> dict:
    """The model's description from its metadata; {} when it has none or it is not a JSON object:
    it is only shown (GET /model), so a damaged one loses the description, not the model."""
    try:
        stored = json.loads(session.get_modelmeta().custom_metadata_map.get(META_KEY) or "{}")
    except (ValueError, RecursionError):
        return {}
    return stored if isinstance(stored, dict) else {}
