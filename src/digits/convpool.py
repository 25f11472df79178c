"""The seed network's two blocks (a 5x5 convolution, then a 2x2 max-pool; the fast network's
first block too) as CPU kernels, convpool.c. torch runs a block as two operators through the
convolution's whole output, padded to oneDNN's channel blocks, and its backward through a
gradient that is zero in three places of four; a kernel keeps each window's four values in
registers, writes only the pooled output and where each maximum was, and sums the gradients only
where the max-pool let one through. A seed-recipe training step on the 2-core CPU takes 8.1 ms
instead of 18.0 ms (BENCHMARKS.md, "The seed network's blocks as C kernels").

    x = conv_then_pool(self.conv1, self.pool, images)   # pool(conv1(images)), a kernel when it can be

The kernels are compiled on first use with the system's C compiler (``$CC``, else ``cc``; once
per machine) into ``$XDG_CACHE_HOME/digits`` (``~/.cache/digits``), and loaded from there
afterwards (a temporary folder of this user's own if the cache cannot be written). Where they
cannot be (no compiler, not Linux, ``DIGITS_NO_KERNEL=1``, ``set_enabled(False)``) and for
anything they do not cover (other shapes, dtypes or devices, modules with hooks or subclasses,
a first-block input that needs its own gradient, autocast, tracing, scripting, torch.compile,
torch.func transforms and forward-mode AD), the block runs as torch's conv2d and max_pool2d.
Their outputs are the same max-pooled convolution and their gradients agree with torch's to
float rounding (tests/test_convpool.py); second derivatives through them raise.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .cache import cache_root

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


def _flags() -> list[str]:
    flags = ["-O3", "-fPIC", "-shared"]
    try:  # x86: AVX2 and FMA where this CPU has them (the library is cached per set of flags)
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpu = ""
    cpu_flags = next((line.split(":", 1)[1].split() for line in cpu.splitlines() if line.startswith("flags")), [])
    if {"avx2", "fma"} <= set(cpu_flags):
        flags += ["-mavx2", "-mfma"]
    return flags


def _compiler() -> list[str] | None:
    """$CC (which may carry arguments, as "ccache gcc" does), else cc; None if it is not found."""
    words = shlex.split(os.environ.get("CC") or "cc")
    found = shutil.which(words[0]) if words else None
    return [found, *words[1:]] if found else None


def _build() -> ctypes.CDLL | None:
    """Compile (or find the compiled) library and load it; None where that cannot be done, for
    whatever reason: the kernels are a speed-up, never a reason for a run to fail."""
    if not sys.platform.startswith("linux") or os.environ.get("DIGITS_NO_KERNEL", "") not in ("", "0"):
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    source = SOURCE.read_bytes()
    # OpenMP's threads (torch's own runtime); a compiler without OpenMP builds a one-thread library
    for flags in ([*_flags(), "-fopenmp"], _flags()):
        key = hashlib.sha256(source + " ".join([platform.machine(), *compiler, *flags]).encode()).hexdigest()[:16]
        for folder in (cache_root, lambda: Path(tempfile.gettempdir()) / f"digits-{os.getuid()}"):
            try:
                library = _load(folder(), key, compiler, flags)
            except Exception:  # noqa: BLE001 (an unreadable cache, an odd HOME, a library without our symbols...)
                library = None
            if library is not None:
                return library
    return None


def _load(folder: Path, key: str, compiler: list[str], flags: list[str]) -> ctypes.CDLL | None:
    """The library in ``folder``, compiled there first if it is not there or not what was
    compiled (a truncated library would crash the process); None if the folder is not this
    user's alone (in a shared /tmp, nobody else may put a library where this one loads it)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o002:
        return None
    path, digest = folder / f"convpool-{key}.so", folder / f"convpool-{key}.sha256"
    intact = path.exists() and digest.exists() and (
        hashlib.sha256(path.read_bytes()).hexdigest() == digest.read_text().strip())
    if not intact and not _compile(compiler, flags, path, digest):
        return None
    library = ctypes.CDLL(str(path))
    _declare(library)
    return library


def _compile(compiler: list[str], flags: list[str], path: Path, digest: Path) -> bool:
    """Compile into a file of our own, then rename it into place, its SHA-256 beside it:
    processes building at the same time never load a half-written library."""
    fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".so.partial")
    os.close(fd)
    try:
        done = subprocess.run([*compiler, *flags, "-o", partial, str(SOURCE)], capture_output=True, timeout=120)
        if done.returncode != 0:
            return False
        text = hashlib.sha256(Path(partial).read_bytes()).hexdigest()
        os.replace(partial, path)
        Path(partial).write_text(text + "\n")  # the same private name, now free
        os.replace(partial, digest)
        return True
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
    """The loaded kernels, built on the first call; None where they are not available."""
    global _library, _tried
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _library = _build()
                finally:
                    _tried = True
    return _library


def prepare() -> None:
    """Build the kernels now if they are on, rather than in the first block that uses them: the first
    run on a machine compiles them (0.4 s here), which is no part of its training time."""
    if _enabled:
        library()


def _ptr(t: torch.Tensor | None) -> int | None:
    """The address of t's memory: t itself must outlive the call that uses it."""
    return None if t is None else t.data_ptr()


class _FirstBlock(torch.autograd.Function):
    """One-channel 28x28 images -> pooled c x 12 x 12; gradients for the weights and bias only."""

    @staticmethod
    def forward(ctx, images, weight, bias, backward):
        lib, n, c = library(), images.shape[0], weight.shape[0]
        out = _empty((n, c, FIRST_POOLED, FIRST_POOLED), memory_format=CL)
        where = _empty((n, FIRST_POOLED, FIRST_POOLED, c), dtype=torch.uint8) if backward else None
        w, b = _plain(weight), _plain(bias)  # named: a temporary's memory would be freed before the call
        lib.convpool_forward(_ptr(images), _ptr(w), _ptr(b), _ptr(out), _ptr(where), n, c, torch.get_num_threads())
        ctx.save_for_backward(images, where)
        ctx.weight_stride = weight.stride()
        return out

    @staticmethod
    @once_differentiable  # the gradients it returns have no graph: a second derivative raises
    def backward(ctx, grad):
        images, where = ctx.saved_tensors
        n, c = images.shape[0], where.shape[-1]
        dw = _empty((c, 1, KERNEL, KERNEL))
        db = _empty((c,)) if ctx.needs_input_grad[2] else None
        grad = grad.contiguous(memory_format=CL)
        _check(library().convpool_backward(_ptr(images), _ptr(where), _ptr(grad), _ptr(dw), _ptr(db), n, c,
                                           torch.get_num_threads()))
        return None, _strided_as(dw, ctx.weight_stride), db, None


class _SecondBlock(torch.autograd.Function):
    """ci x 12 x 12 maps (channels last) -> pooled co x 4 x 4; gradients for all three."""

    @staticmethod
    def forward(ctx, maps, weight, bias, backward):
        lib, (n, ci), co = library(), maps.shape[:2], weight.shape[0]
        out = _empty((n, co, SECOND_POOLED, SECOND_POOLED), memory_format=CL)
        where = _empty((n, SECOND_POOLED, SECOND_POOLED, co), dtype=torch.uint8) if backward else None
        w, b = _plain(weight), _plain(bias)
        lib.convpool2_forward(_ptr(maps), _ptr(w), _ptr(b), _ptr(out), _ptr(where), n, ci, co, torch.get_num_threads())
        ctx.save_for_backward(maps, where, weight)  # the weight itself: autograd notices if it changes before backward
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        maps, where, weight = ctx.saved_tensors
        (n, ci), co = maps.shape[:2], weight.shape[0]
        w = _plain(weight)
        dx = _empty((n, ci, SECOND_SIDE, SECOND_SIDE), memory_format=CL) if ctx.needs_input_grad[0] else None
        dw = _empty((co, ci, KERNEL, KERNEL))
        db = _empty((co,)) if ctx.needs_input_grad[2] else None
        grad = grad.contiguous(memory_format=CL)
        _check(library().convpool2_backward(_ptr(maps), _ptr(where), _ptr(grad), _ptr(w), _ptr(dx), _ptr(dw), _ptr(db),
                                            n, ci, co, torch.get_num_threads()))
        return dx, _strided_as(dw, weight.stride()), db, None


def _empty(shape, dtype=torch.float32, memory_format=torch.contiguous_format) -> torch.Tensor:
    """A CPU buffer of the kernels' type, whatever torch's default dtype and device are."""
    return torch.empty(shape, dtype=dtype, device="cpu", memory_format=memory_format)


def _strided_as(grad: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """The kernels' weight gradient (written in plain layout) in the weight's own layout (channels
    last in training): DDP copies each gradient into a bucket laid out as its weight, and warned
    ("Grad strides do not match bucket view strides") on every process when they differed."""
    if grad.stride() == stride:
        return grad
    return torch.empty_strided(grad.shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().contiguous()


def _check(code: int) -> None:
    if code != 0:
        raise MemoryError("out of memory in the convolution kernel's backward pass")


def _hooked(*modules: nn.Module) -> bool:
    """Whether calling the modules would run hooks (theirs, or every module's) that a kernel skips."""
    everyone = torch.nn.modules.module
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(m, name, None) for m in modules for name in names) or any(
        getattr(everyone, f"_global{name}", None) for name in names)


def _transformed() -> bool:
    """Inside torch.func's transforms (vmap, grad...) or forward-mode AD, which a kernel cannot serve."""
    functorch = getattr(torch._C, "_are_functorch_transforms_active", None)
    forward_ad = getattr(torch.autograd.forward_ad, "_current_level", -1)
    return bool(functorch and functorch()) or forward_ad >= 0


def fusable(conv: nn.Module, pool: nn.Module, x: torch.Tensor) -> str | None:
    """Which kernel can run pool(conv(x)): "first", "second", or None for torch's operators. The
    library is built on the first call that finds one."""
    if not _enabled or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return None
    # exactly these modules (a subclass may compute something else), called without hooks
    if type(conv) is not nn.Conv2d or type(pool) is not nn.MaxPool2d or _hooked(conv, pool) or _transformed():
        return None
    weight, bias = conv.weight, conv.bias
    plain = (torch.Tensor, nn.Parameter)  # not a tracer's fake or functional tensor
    if type(x) is not torch.Tensor or type(weight) not in plain or (bias is not None and type(bias) not in plain):
        return None
    if x.ndim != 4 or x.shape[0] == 0 or conv.out_channels == 0:
        return None
    if weight.shape != (conv.out_channels, x.shape[1], KERNEL, KERNEL) or (
            bias is not None and bias.shape != (conv.out_channels,)):
        return None  # torch's operators say what does not fit
    if x.shape[1:] == (1, FIRST_SIDE, FIRST_SIDE) and not x.requires_grad and (
            x.is_contiguous() or x.is_contiguous(memory_format=CL)):
        kind = "first"
    elif x.shape[2:] == (SECOND_SIDE, SECOND_SIDE) and 1 <= x.shape[1] <= MAX_CHANNELS and x.is_contiguous(
            memory_format=CL):
        kind = "second"
    else:
        return None
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in (x, weight, bias) if t is not None):
        return None
    if (conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode) != (
            (1, 1), (0, 0), (1, 1), 1, "zeros"):
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
    if kind is None:
        return pool(conv(x))
    block = _FirstBlock if kind == "first" else _SecondBlock
    # where each maximum was is kept only when a backward pass can follow
    backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, conv.weight, conv.bias))
    return block.apply(x, conv.weight, conv.bias, backward)
