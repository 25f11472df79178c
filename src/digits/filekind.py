"""What a file is, told by its first bytes: enough to say what a user gave where a model was
expected (an image, a text file, an ONNX model), and to read an ONNX model by its contents. Needs
neither torch nor onnxruntime.

    kind = image_kind(first_bytes(path))    # "JPEG", "PNG", ... or None
    looks_like(first_bytes(path))           # "it looks like a PNG image", "it is empty", ... or None
    refuse_other_files(path)                # CheckpointError unless it may be a checkpoint
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import CheckpointError

ZIP = b"PK\x03\x04"  # torch.save's archives (and TorchScript's) are zip files
PICKLE = b"\x80"  # the PROTO opcode that starts torch.save's older format, a pickle stream
DAMAGED = "damaged or truncated: not a complete checkpoint file"

_IMAGES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
           (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def first_bytes(path: str | Path, n: int = 512) -> bytes:
    """Up to ``n`` bytes from the start of ``path`` (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        return f.read(n)


def is_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with its ir_version (field 1, a small varint), then the next field in
    number order (producer_name, ..., graph, opset_import); a checkpoint starts with a zip or pickle."""
    return len(head) >= 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in b"\x12\x1a\x22\x28\x32\x3a\x42"


def image_kind(head: bytes) -> str | None:
    """The image format whose signature ``head`` starts with (those Pillow reads for digits), or None."""
    for signature, kind in _IMAGES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":  # then 4 reserved bytes, always zero
        return "BMP"
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "Netpbm (PGM/PPM)"
    return None


def is_text(head: bytes) -> bool:
    """``head`` reads as UTF-8 text (a JSON, CSV or Markdown file, say): printable characters and
    line breaks only (a character cut at the end of ``head`` is allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return False
        text = head[:e.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\n\r\f" for c in text)


def looks_like(head: bytes) -> str | None:
    """What a file starting with ``head`` plainly is, for an error message: an image, nothing, or
    text; None when it is none of those."""
    kind = image_kind(head)
    return (f"it looks like a {kind} image" if kind else "it is empty" if not head
            else "it looks like a text file" if is_text(head) else None)


def refuse_other_files(path: Path) -> None:
    """Name what ``path`` is when it is plainly no checkpoint, told by its first bytes, where
    torch.load would say something obscure or misleading (a JPEG: "refused: it holds objects other
    than tensors ...; Unsupported operand 255"; a truncated file: miniz's advice, cut off), or the
    user gave the run's folder. Zip archives and pickles, which torch.save writes, go on to torch.load."""
    if path.is_dir():
        inside = path / "checkpoint.pt"
        hint = f"did you mean {inside}?" if inside.is_file() else "give the checkpoint.pt of a training run"
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; {hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        head = first_bytes(path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
    if head.startswith(ZIP) or (head and ZIP.startswith(head)):  # or its first bytes only
        _refuse_other_archives(path)
    elif not head.startswith(PICKLE):
        what = looks_like(head)
        if what is None and (is_onnx(head) or path.suffix.lower() == ".onnx"):
            # read_checkpoint serves evaluate, export, run --resume and fewshot-predict: name none
            raise CheckpointError(f"{path}: an ONNX model, not a digits checkpoint; this command needs a "
                                  "checkpoint.pt that digits wrote (predict and serve read ONNX models)")
        what = what or "PyTorch saves zip archives or pickles; this is neither"
        raise CheckpointError(f"{path}: not a checkpoint file ({what})")


def _refuse_other_archives(path: Path) -> None:
    """A zip archive that is no checkpoint: cut short (its directory, at the end, is missing), a
    TorchScript export (torch.load would warn and hand it to torch.jit.load), or no PyTorch file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception:  # noqa: BLE001  BadZipFile mostly; a damaged directory raises others too
        raise CheckpointError(f"{path}: not a readable digits checkpoint ({DAMAGED})") from None
    if any(name.endswith("/constants.pkl") for name in names):
        raise CheckpointError(f"{path}: a TorchScript export, not a digits checkpoint; use the run's "
                              "checkpoint.pt, or export to ONNX (`digits export`), which digits reads")
    if not any(name.endswith("data.pkl") for name in names):
        raise CheckpointError(f"{path}: not a checkpoint file (a zip archive, but not a PyTorch checkpoint)")
