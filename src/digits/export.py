"""Export a checkpoint for deployment: ONNX (for onnxruntime, no torch needed) or TorchScript.

The exported graph takes uint8 images (N, 1, 28, 28), light ink on black as ``digits.preprocess``
makes them, and applies the training normalisation itself, so a deployment cannot get it wrong.
The checkpoint's description travels in the file (ONNX metadata / a TorchScript extra file).

    export_model("runs/seed/checkpoint.pt", None, "seed.onnx")   # format from the suffix
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from .atomic import atomic_write
from .checkpoint import load_classifier
from .data import normalize
from .errors import DigitsError
from .models import count_parameters
from .outpath import check_output, make_folder
from .predictor import META_KEY, describe_checkpoint

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".ts": "torchscript"}  # the format a name implies when none is given
# suffixes that say a file is another kind than the format (torch.jit.save's own examples name
# TorchScript .pt, so .pt is refused for ONNX only)
_OTHER_KIND = {"onnx": {".ts": "a TorchScript model", ".pt": "a PyTorch model", ".pth": "a PyTorch model"},
               "torchscript": {".onnx": "an ONNX model"}}
OPSET = 17


class Normalized(torch.nn.Module):
    """The model with its input normalisation: uint8 pixels in, logits out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(images))


def export_model(checkpoint: str | Path, fmt: str | None, out: str | Path) -> Path:
    """Write ``checkpoint``'s model to ``out`` in format ``fmt`` (onnx, torchscript, or None: the
    one ``out``'s suffix names)."""
    checkpoint, out = Path(checkpoint), Path(out)
    fmt = export_format(fmt, out)
    # metrics.json beside the checkpoint is read too, for the description
    check_output(out, [checkpoint, checkpoint.with_name("metrics.json")], "--out")
    model, ckpt = load_classifier(checkpoint, "cpu")  # an embedding's export would be read as digits
    wrapped = Normalized(model.float().to(memory_format=torch.contiguous_format)).eval()
    description = describe_checkpoint(checkpoint, ckpt, count_parameters(model))
    example = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    try:
        make_folder(out.parent)
        with warnings.catch_warnings():  # torch 2.13 marks both exporters used here deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "onnx":
                data = _export_onnx(wrapped, example, description)
            else:
                buf = io.BytesIO()
                torch.jit.save(torch.jit.trace(wrapped, example), buf,
                               _extra_files={"digits.json": json.dumps(description)})
                data = buf.getvalue()
        atomic_write(out, lambda f: f.write(data))  # a full disk leaves no truncated model behind
    except OSError as e:
        raise DigitsError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def export_format(fmt: str | None, out: Path) -> str:
    """``fmt``, or the format ``out``'s suffix names when it is None. A name whose suffix says it
    is another kind of model file is refused, before any work: digits predict and serve read a
    model by its contents, but a person, or another tool, goes by the name."""
    suffix = out.suffix.lower()
    if fmt is None:
        fmt = SUFFIXES.get(suffix)
        if fmt is None:
            raise DigitsError(f"--out {out}: cannot tell the format from its suffix; name it .onnx for ONNX "
                              "(which digits predict and serve read) or .ts for TorchScript, or give --format")
    if fmt not in FORMATS:
        raise DigitsError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    other = _OTHER_KIND[fmt].get(suffix)
    if other is not None:
        wanted, kind = {"onnx": (".onnx", "an ONNX model"), "torchscript": (".ts", "a TorchScript model")}[fmt]
        raise DigitsError(f"--out {out}: {suffix} names {other}, not {kind}; name it {wanted}")
    return fmt


def _export_onnx(wrapped: torch.nn.Module, example: torch.Tensor, description: dict) -> bytes:
    import onnx

    # The TorchScript-based exporter: 0.9 s against 15 s for the dynamo exporter here
    # (benchmarks/inference_facts.py), and no dependence on onnxscript's optimiser.
    buf = io.BytesIO()
    torch.onnx.export(wrapped, (example,), buf, input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(description)
    proto.doc_string = f"digits {description['model_name']}: uint8 images (N, 1, 28, 28) -> logits (N, 10)"
    return proto.SerializeToString()
