"""Data-parallel training across processes: the process group, ranks, collectives and sharding.

Launched by torchrun, each process finds RANK, WORLD_SIZE and LOCAL_RANK in its environment;
``init`` then joins the process group (gloo on CPU, NCCL on CUDA, one GPU per process). Without
those variables every function here is the single-process identity, so code that calls them runs
unchanged in one process.

    device = init(torch.device("cuda"))        # cuda:LOCAL_RANK under torchrun
    batches = shard(epoch_permutation(n, seed, epoch)).split(batch_size)
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from .errors import DigitsError

T = TypeVar("T")


def launched() -> bool:
    """True when torchrun (or an equivalent launcher) started more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its own machine (which GPU it drives)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Rank 0 alone writes files (checkpoints, logs, figures, reports) and prints the summary."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; return the device this process uses.

    A CUDA device becomes cuda:LOCAL_RANK, so each process on a machine drives its own GPU."""
    if not launched():
        return device
    if device.type not in ("cpu", "cuda"):
        raise DigitsError(f"distributed training runs on cpu or cuda, not {device.type}; pass --device cpu "
                          "or --device cuda")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise DigitsError(f"process {local} of this machine has no GPU: it has {torch.cuda.device_count()}; "
                              "start at most that many with torchrun --nproc_per_node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(shutdown)  # the group lives as long as the process, as torchrun's workers do
    return device


def shutdown() -> None:
    """Leave the process group (at exit): once gloo's threads have let go of every tensor of ours."""
    if active():
        _settle()
        dist.destroy_process_group()


# The tensors all_sum handed to the backend that it may still hold. Gloo's worker thread drops its
# reference to a collective's tensors after the caller's wait has returned, and dropping the last
# reference besides Python's own releases the tensor's Python object, which takes the GIL. Should
# the interpreter be finalizing by then, the thread is made to exit inside a destructor: C++'s
# std::terminate, SIGABRT ("terminate called without an active exception"). That ended 1 run in
# 100-250 of tests/ddp_worker.py here: rank 1, which has nothing to write, reaches exit a few
# milliseconds after its last collective (benchmarks/ddp_exit.py, its --core and gdb). The group's
# destructor would join those threads, but a DistributedDataParallel, once made, keeps the group
# alive to the end (torch 2.13); so the last of the lent tensors are waited for instead, at exit.
_lent: list[torch.Tensor] = []
_SETTLE_SECONDS = 2.0  # the most shutdown waits (then exits as before): a thread needs microseconds


def _forget_returned() -> None:
    """Drop from _lent the tensors the backend has let go of. While C++ holds a tensor, the tensor
    holds a reference to its Python object; without it, the only references are _lent's slot, the
    loop's variable and getrefcount's argument."""
    _lent[:] = [t for t in _lent if sys.getrefcount(t) > 3]


def _settle() -> None:
    deadline = time.monotonic() + _SETTLE_SECONDS
    _forget_returned()
    while _lent and time.monotonic() < deadline:
        time.sleep(0.001)  # (the GIL released: the thread that holds one can drop it)
        _forget_returned()


def barrier() -> None:
    if active():
        dist.barrier()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over processes, as a new float64 tensor on ``values``' device."""
    if not active():
        return values.detach().double()
    # NCCL reduces tensors on this process's GPU, gloo on the CPU
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    sent = values.detach().to(device, torch.float64, copy=True)
    dist.all_reduce(sent, dist.ReduceOp.SUM)
    _forget_returned()
    _lent.append(sent)  # the caller gets a copy: only the backend's references can keep it in _lent
    return sent.to(values.device, copy=True)


def any_rank(flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (a collective: all must call it)."""
    if not active():
        return flag
    return bool(all_sum(torch.tensor([float(flag)])).item() > 0)


def mean(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over processes (per-step losses: every process's batch has the same size)."""
    return all_sum(values) / world_size() if active() else values


def ratio(hits, count) -> float:
    """sum(hits) / sum(count) over processes: an accuracy from every process's counts."""
    total = all_sum(torch.tensor([float(hits), float(count)]))
    return (total[0] / total[1]).item() if total[1] > 0 else float("nan")


def shard_size(n: int) -> int:
    """Items each process takes from an epoch of ``n``: ceil(n / world size), after padding."""
    return -(-n // world_size())


def shard(order: torch.Tensor, pad: bool = True) -> torch.Tensor:
    """This process's share of ``order``, the same on every process: items rank, rank + W, ...

    As DistributedSampler (drop_last=False): with ``pad``, the first items are repeated until the
    length divides by the world size W, so every process takes the same number of steps. Rank r's
    k-th batch of b holds order[k*b*W : (k+1)*b*W] at positions r, r + W, ...: together the
    processes' k-th batches are the k-th batch of b*W that one process would take."""
    w = world_size()
    if w == 1:
        return order
    if pad and len(order) % w:
        extra = w - len(order) % w
        order = torch.cat([order, order.repeat(-(-extra // len(order)))[:extra]])
    return order[rank()::w]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when running in a process group, else ``model``."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def local_main_first(load: Callable[[], T]) -> T:
    """Run ``load`` (which may download) on each machine's local rank 0 while the others wait,
    then on the others, which find the files in place. A failure stops every process."""
    if not active():
        return load()
    first, result = local_rank() == 0, None
    failed = 0.0
    if first:
        try:
            result = load()
        except DigitsError:
            failed = 1.0
            all_sum(torch.tensor([failed]))  # release the waiting processes, which then stop
            raise
    if all_sum(torch.tensor([failed])).item() > 0:
        raise DigitsError("loading the data failed in another process; see its message above")
    return result if first else load()
