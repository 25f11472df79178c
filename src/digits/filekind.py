"""What a file is, told by its first bytes: enough to say what a user gave where a model was
expected (an image, a text file, an ONNX model), and to read an ONNX model by its contents. Needs
neither torch nor onnxruntime.

    kind = image_kind(first_bytes(path))    # "JPEG", "PNG", ... or None
    looks_like(first_bytes(path))           # "it looks like a PNG image", "it is empty", ... or None
"""
from __future__ import annotations

from pathlib import Path

ZIP = b"PK\x03\x04"  # torch.save's archives (and TorchScript's) are zip files
PICKLE = b"\x80"  # the PROTO opcode that starts torch.save's older format, a pickle stream

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
