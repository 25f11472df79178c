"""MNIST as whole tensors: IDX reading, the seeded train/validation split, normalisation.

Each split is one uint8 tensor of images (N, 1, 28, 28) and one int64 tensor of labels; batches
are made by indexing, never by a per-sample loader.

    data = load_mnist()                 # finds or downloads MNIST (see digits.download)
    data.train.images.shape             # torch.Size([55000, 1, 28, 28])
"""
from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

MEAN, STD = 0.1307, 0.3081  # of the 60,000 training images, pixel values scaled to [0, 1]
CLASSES = tuple(str(d) for d in range(10))
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# IDX type code -> big-endian numpy dtype (the format as published with MNIST).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SEED_RANGE = 2 ** 64  # torch's generators take seeds in [-2**63, 2**64) and wrap negative ones modulo this
_MAX_BYTES = 1 << 30  # no IDX file we read is near 1 GiB; refuse rather than exhaust memory


def _read_bytes(path: Path) -> bytes:
    # Never read(cap): Python allocates the whole size asked for up front (1 GiB for a 9-byte file,
    # seen with tracemalloc), which a machine without memory overcommit refuses.
    # before open(): opening a named pipe (FIFO) for reading blocks until a writer appears
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # /dev/zero or a pipe would never end
            raise DataError(f"{path}: not a regular file")
        if os.fstat(f.fileno()).st_size > _MAX_BYTES:
            raise _too_large(path)
        data = f.read()
    raw = _gunzip(data) if data[:2] == b"\x1f\x8b" else data
    if len(raw) > _MAX_BYTES:  # a gzip bomb stops here, having held at most the cap
        raise _too_large(path)
    return raw


def _too_large(path: Path) -> DataError:
    return DataError(f"{path}: larger than {_MAX_BYTES >> 20} MiB uncompressed; not an MNIST IDX file")


def _gunzip(data: bytes) -> bytes:
    """Every gzip member of ``data``, stopping past 1 GiB. One zlib call per member: the training
    images decode in 0.16 s of CPU here, against 0.21 s through gzip.GzipFile's small reads."""
    parts, total = [], 0
    while data:
        d = zlib.decompressobj(wbits=31)
        parts.append(d.decompress(data, _MAX_BYTES + 1 - total))
        total += len(parts[-1])
        if total > _MAX_BYTES:
            break
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker")
        data = d.unused_data
    return b"".join(parts) if len(parts) != 1 else parts[0]


_AGAIN = "delete it and download it again"  # every file read_idx reads is one of MNIST's


def _looks_like(raw: bytes) -> str:
    """What a file that is not IDX seems to be, in a few words (a failed download, often)."""
    if not raw:
        return "it is empty"
    if raw.lstrip()[:1] == b"<":
        return "it is HTML or XML, perhaps an error page saved in its place"
    return f"magic number {raw[:4].hex()}"


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (gzip-compressed or not) into a tensor, validating header against size."""
    path = Path(path)
    try:
        raw = _read_bytes(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip data ({e}); {_AGAIN}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file ({_looks_like(raw)}); {_AGAIN}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated in its header ({len(raw)} bytes); {_AGAIN}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header declares shape {dims} ({expected} bytes of data) but the "
                        f"file holds {len(raw) - header}; it is truncated or corrupt; {_AGAIN}")
    try:  # an empty array may still declare dimensions numpy cannot address (0 x 965 x 2**29 ...)
        array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    except ValueError as e:
        raise DataError(f"{path}: header declares an impossible shape {dims} ({e})") from None
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


@dataclass
class Split:
    """One part of the data: uint8 images (N, 1, 28, 28) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class MNIST:
    train: Split
    val: Split
    test: Split

    def to(self, device: torch.device | str) -> "MNIST":
        return MNIST(self.train.to(device), self.val.to(device), self.test.to(device))


def _load_pair(folder: Path, images_name: str, labels_name: str) -> Split:
    images = read_idx(_existing(folder, images_name))
    labels = read_idx(_existing(folder, labels_name))
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or images.dtype != torch.uint8:
        raise DataError(f"{folder / images_name}: expected uint8 images of 28x28, got "
                        f"{images.dtype} {tuple(images.shape)}")
    if labels.dim() != 1 or len(labels) != len(images) or labels.dtype != torch.uint8:
        raise DataError(f"{folder / labels_name}: expected {len(images)} uint8 labels, got "
                        f"{labels.dtype} {tuple(labels.shape)}")
    if len(labels) and int(labels.max()) > 9:
        raise DataError(f"{folder / labels_name}: labels must be digits 0-9, found {int(labels.max())}")
    return Split(images.unsqueeze(1), labels.long())


def _existing(folder: Path, name: str) -> Path:
    path = mnist_file(folder, name)
    if path is None:
        raise DataError(f"{folder}: {name}[.gz] is missing")
    return path


def accepted_names(name: str) -> tuple[str, ...]:
    """The file names taken for ``name``, in order of preference: the mirrors' NAME.gz, NAME
    uncompressed, then Kaggle's dotted spelling (train-images.idx3-ubyte), .gz or not."""
    dotted = name.replace("-idx", ".idx")
    return f"{name}.gz", name, f"{dotted}.gz", dotted


def mnist_file(folder: Path, name: str) -> Path | None:
    """The file in ``folder`` holding the MNIST file ``name`` (one of FILES), or None: one of its
    accepted_names, spelt exactly, else in any letter case (TRAIN-IMAGES-IDX3-UBYTE.GZ, as some
    archives and case-insensitive disks leave them). read_idx checks its content either way."""
    names = accepted_names(name)
    for candidate in names:
        if (folder / candidate).exists():
            return folder / candidate
    try:
        entries = sorted(os.listdir(folder))
    except OSError:  # missing, not a folder, or unreadable: the exact names were all it could have
        return None
    for candidate in names:
        for entry in entries:
            if entry.lower() == candidate and (folder / entry).exists():
                return folder / entry
    return None


def seed_value(seed: int) -> int:
    """Any integer as a seed torch takes. Its generators take [-2**63, 2**64) and wrap negative seeds
    modulo 2**64, so every seed that worked keeps its stream, and larger ones (a key derived from a
    13-digit --seed, say) no longer raise "Overflow when unpacking long long"."""
    return seed % _SEED_RANGE


def split_train_val(full: Split, val_size: int, seed: int = 0) -> tuple[Split, Split]:
    """A seeded random split of the training file; the same seed gives the same split anywhere."""
    if not 0 <= val_size < len(full):
        raise DataError(f"--val-size must be between 0 and {len(full) - 1}, got {val_size}")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed_value(seed)))
    # a mask's nonzero() is perm[:val_size].sort() (and the rest's), but ~20x faster: torch's CPU
    # sort of 60,000 int64 took 0.19 s here
    in_val = torch.zeros(len(full), dtype=torch.bool)
    in_val[perm[:val_size]] = True
    val_idx, train_idx = in_val.nonzero().flatten(), (~in_val).nonzero().flatten()
    return (Split(full.images.index_select(0, train_idx), full.labels.index_select(0, train_idx)),
            Split(full.images.index_select(0, val_idx), full.labels.index_select(0, val_idx)))


def load_mnist(data_dir: str | Path | None = None, val_size: int = 5000, split_seed: int = 0,
               download: bool = True, device: torch.device | str = "cpu") -> MNIST:
    """Find (or download) MNIST and return the train/validation/test splits on ``device``."""
    from .download import find_mnist

    folder = find_mnist(data_dir, download=download)
    train, val = split_train_val(_load_pair(folder, TRAIN_IMAGES, TRAIN_LABELS), val_size, split_seed)
    return MNIST(train, val, _load_pair(folder, TEST_IMAGES, TEST_LABELS)).to(device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (0-255) -> float32 standardised with the training set's mean and std."""
    pixels = images.float()
    if pixels is images:  # already float: .float() returned the caller's tensor, which must not change
        pixels = pixels.clone()
    return pixels.mul_(1 / (255 * STD)).sub_(MEAN / STD)
