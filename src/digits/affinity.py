"""Where torch's CPU threads run: for the training commands on Linux, one thread per core, each
pinned to its core (OpenMP's OMP_PROC_BIND=close, OMP_PLACES=cores).

On a 2-core machine beside one other busy process, a seed-recipe `digits run` with unpinned
threads took 1.45x as long as with pinned ones; on a quiet machine pinned ones were 3% slower
(BENCHMARKS.md, benchmarks/thread_binding.py). It must happen before torch is imported: OpenMP
reads these variables when it starts.

    pin_threads(threads)   # in the CLI, before anything imports torch
    unpin()                # in a forked child: run on every CPU again
"""
from __future__ import annotations

import os
import sys

_VARIABLES = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")
# set by launchers of several processes (torchrun, Slurm, Open MPI, MPICH): each would pin its
# threads to the same first cores
_LAUNCHERS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK")
_original: set[int] | None = None  # the CPUs this process could use before any pinning


def pin_threads(threads: int) -> bool:
    """Pin torch's threads, one per core, unless that would hurt or the user chose otherwise:
    one thread (pinned, it could not move off a busy core), a launcher of several processes
    (they would share the first cores), OpenMP placement already set (OMP_PROC_BIND=false turns
    this off), or torch already started. True if pinned."""
    global _original
    if not sys.platform.startswith("linux") or "torch" in sys.modules or threads == 1:
        return False
    if any(name in os.environ for name in (*_VARIABLES, *_LAUNCHERS)):
        return False
    _original = os.sched_getaffinity(0)
    if len(_original) < 2:
        return False
    os.environ["OMP_PROC_BIND"], os.environ["OMP_PLACES"] = "close", "cores"
    return True


def unpin() -> None:
    """Let this process run on every CPU it could before pinning. A forked child inherits the
    pinned core of the thread that forked it; without this, the figures drawn "in parallel" by
    digits.forked would share that one core with the parent."""
    if _original is not None:
        os.sched_setaffinity(0, _original)
