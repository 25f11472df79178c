"""The first block of the seed and fast networks (a 5x5 convolution of 28x28 one-channel images,
then a 2x2 max-pool) as one CPU kernel, convpool.c: torch runs them as two operators through a
24x24 output padded to oneDNN's channel blocks, and their backward through a mostly-zero
gradient of that output; the kernel keeps each window's four values in registers, writes only the
pooled 12x12 and sums the weights' gradient where the max-pool let a gradient through. A
seed-recipe training step on the 2-core CPU takes about 40% less time (BENCHMARKS.md, "The first
block as one kernel").

    x = conv_then_pool(self.conv1, self.pool, images)   # pool(conv1(images)), fused when it can be

The kernel is compiled on first use with the system's C compiler (``$CC``, else ``cc``; about half
a second) into ``$XDG_CACHE_HOME/digits`` (``~/.cache/digits``), and loaded from there afterwards.
Where it cannot be (no compiler, another platform, ``DIGITS_NO_KERNEL=1``) and for anything it does
not cover (other shapes, dtypes or devices, an input that needs its own gradient, autocast, and
tracing, exporting or torch.compile, which need torch's operators), the block runs as torch's
conv2d and max_pool2d. The kernel's forward output is the same max-pooled convolution; its weight
gradient is summed in another order, so it agrees with torch's to float rounding
(tests/test_convpool.py).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn

SOURCE = Path(__file__).with_name("convpool.c")
KERNEL, FIRST_SIDE, FIRST_POOLED, SECOND_SIDE, SECOND_POOLED = 5, 28, 12, 12, 4  # what convpool.c is written for
MAX_CHANNELS = 32  # its second block's MAXC
CL = torch.channels_last
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False
_enabled = True


def set_enabled(enabled: bool) -> bool:
    """Turn the kernels on or off in this process (off: torch's operators everywhere, as with
    DIGITS_NO_KERNEL=1); returns the previous setting. For comparisons and tests."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digits"


def _flags() -> list[str]:
    flags = ["-O3", "-fPIC", "-shared", "-fopenmp"]
    try:  # x86: AVX2 and FMA where this CPU has them (the library is cached per set of flags)
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpu = ""
    cpu_flags = next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), [])
    if {"avx2", "fma"} <= set(cpu_flags):
        flags += ["-mavx2", "-mfma"]
    return flags


def _build() -> ctypes.CDLL | None:
    """Compile (or find the compiled) library and load it; None where that cannot be done."""
    if not sys.platform.startswith("linux") or os.environ.get("DIGITS_NO_KERNEL", "") not in ("", "0"):
        return None
    compiler = shutil.which(os.environ.get("CC") or "cc")
    if compiler is None:
        return None
    source, flags = SOURCE.read_bytes(), _flags()
    key = hashlib.sha256(source + " ".join([platform.machine(), *flags]).encode()).hexdigest()[:16]
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"digits-{os.getuid()}"):
        path = folder / f"convpool-{key}.so"
        if not path.exists() and not _compile(compiler, flags, folder, path):
            continue
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        _declare(library)
        return library
    return None


def _compile(compiler: str, flags: list[str], folder: Path, path: Path) -> bool:
    """Compile into a file of our own, then rename it into place: processes building at the same
    time never load a half-written library."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
        os.close(fd)
    except OSError:
        return False
    try:
        done = subprocess.run([compiler, *flags, "-o", partial, str(SOURCE)], capture_output=True, timeout=120)
        if done.returncode == 0:
            os.replace(partial, path)
            return True
        return False
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _declare(library: ctypes.CDLL) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    library.convpool_forward.argtypes = [p, p, p, p, p, i, i, i]
    library.convpool_forward.restype = None
    library.convpool_backward.argtypes = [p, p, p, p, p, i, i, i]
    library.convpool_backward.restype = i
    library.convpool2_forward.argtypes = [p, p, p, p, p, i, i, i, i]
    library.convpool2_forward.restype = None
    library.convpool2_backward.argtypes = [p, p, p, p, p, p, p, i, i, i, i]
    library.convpool2_backward.restype = i


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on the first call; None where it is not available."""
    global _library, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _library = _build()
                _tried = True
    return _library


def _ptr(t: torch.Tensor | None) -> int | None:
    """The address of t's memory: t itself must outlive the call that uses it."""
    return None if t is None else t.data_ptr()


class _FirstBlock(torch.autograd.Function):
    """One-channel 28x28 images -> pooled c x 12 x 12; gradients for the weights and bias only."""

    @staticmethod
    def forward(ctx, images, weight, bias):
        lib, n, c = library(), images.shape[0], weight.shape[0]
        out = torch.empty((n, c, FIRST_POOLED, FIRST_POOLED), memory_format=CL)
        where = torch.empty((n, FIRST_POOLED, FIRST_POOLED, c), dtype=torch.uint8) if _training(weight, bias) else None
        w, b = _plain(weight), _plain(bias)  # named: a temporary's memory would be freed before the call
        lib.convpool_forward(_ptr(images), _ptr(w), _ptr(b), _ptr(out), _ptr(where), n, c, torch.get_num_threads())
        ctx.save_for_backward(images, where)
        return out

    @staticmethod
    def backward(ctx, grad):
        images, where = ctx.saved_tensors
        n, c = images.shape[0], where.shape[-1]
        dw = torch.empty((c, 1, KERNEL, KERNEL))
        db = torch.empty(c) if ctx.needs_input_grad[2] else None
        grad = grad.contiguous(memory_format=CL)
        _check(library().convpool_backward(_ptr(images), _ptr(where), _ptr(grad), _ptr(dw), _ptr(db), n, c,
                                           torch.get_num_threads()))
        return None, dw, db


class _SecondBlock(torch.autograd.Function):
    """ci x 12 x 12 maps (channels last) -> pooled co x 4 x 4; gradients for all three."""

    @staticmethod
    def forward(ctx, maps, weight, bias):
        lib, (n, ci), co = library(), maps.shape[:2], weight.shape[0]
        out = torch.empty((n, co, SECOND_POOLED, SECOND_POOLED), memory_format=CL)
        train = maps.requires_grad or _training(weight, bias)
        where = torch.empty((n, SECOND_POOLED, SECOND_POOLED, co), dtype=torch.uint8) if train else None
        w, b = _plain(weight), _plain(bias)
        lib.convpool2_forward(_ptr(maps), _ptr(w), _ptr(b), _ptr(out), _ptr(where), n, ci, co, torch.get_num_threads())
        ctx.save_for_backward(maps, where, w)
        return out

    @staticmethod
    def backward(ctx, grad):
        maps, where, w = ctx.saved_tensors
        (n, ci), co = maps.shape[:2], w.shape[0]
        dx = torch.empty((n, ci, SECOND_SIDE, SECOND_SIDE), memory_format=CL) if ctx.needs_input_grad[0] else None
        dw = torch.empty((co, ci, KERNEL, KERNEL))
        db = torch.empty(co) if ctx.needs_input_grad[2] else None
        grad = grad.contiguous(memory_format=CL)
        _check(library().convpool2_backward(_ptr(maps), _ptr(where), _ptr(grad), _ptr(w), _ptr(dx), _ptr(dw), _ptr(db),
                                            n, ci, co, torch.get_num_threads()))
        return dx, dw, db


def _training(weight, bias) -> bool:
    return weight.requires_grad or (bias is not None and bias.requires_grad)


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().contiguous()


def _check(code: int) -> None:
    if code != 0:
        raise MemoryError("out of memory in the convolution kernel's backward pass")


def fusable(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> str | None:
    """Which kernel can run pool(conv(x)): "first", "second", or None for torch's operators. The
    library is built on the first call that finds one."""
    if not _enabled or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return None
    if not (isinstance(conv, nn.Conv2d) and isinstance(pool, nn.MaxPool2d)):
        return None
    weight, bias = conv.weight, conv.bias
    plain = (torch.Tensor, nn.Parameter)  # not a tracer's fake or functional tensor
    if type(x) is not torch.Tensor or type(weight) not in plain or (bias is not None and type(bias) not in plain):
        return None
    if x.ndim != 4 or x.shape[0] == 0 or conv.out_channels == 0:
        return None
    if x.shape[1:] == (1, FIRST_SIDE, FIRST_SIDE) and not x.requires_grad and (
            x.is_contiguous() or x.is_contiguous(memory_format=CL)):
        kind = "first"
    elif x.shape[2:] == (SECOND_SIDE, SECOND_SIDE) and 1 <= x.shape[1] <= MAX_CHANNELS and x.is_contiguous(
            memory_format=CL):
        kind = "second"
    else:
        return None
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in (x, weight, *([bias] if bias is not None else []))):
        return None
    if (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode) != (
            (KERNEL, KERNEL), (1, 1), (0, 0), (1, 1), 1, "zeros"):
        return None
    if (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding), _pair(pool.dilation),
            pool.ceil_mode, pool.return_indices) != ((2, 2), (2, 2), (0, 0), (1, 1), False, False):
        return None
    if torch.is_autocast_enabled("cpu"):
        return None
    return kind if library() is not None else None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_then_pool(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """pool(conv(x)), as a kernel where fusable() finds one (its output is channels-last)."""
    kind = fusable(conv, pool, x)
    if kind == "first":
        return _FirstBlock.apply(x, conv.weight, conv.bias)
    if kind == "second":
        return _SecondBlock.apply(x, conv.weight, conv.bias)
    return pool(conv(x))
