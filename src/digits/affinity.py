"""Where torch's CPU threads run: for the training commands on Linux, one thread per core, each
pinned to its core (OpenMP's OMP_PROC_BIND=close, OMP_PLACES=cores).

On a 2-core machine beside one other busy process, a seed-recipe `digits run` with unpinned
threads took 1.45x as long as with pinned ones; on a quiet machine pinned ones were 4% slower
(BENCHMARKS.md, benchmarks/thread_binding.py). Only a CPU run that uses every core is pinned.
It must happen before torch is imported: OpenMP reads these variables when it starts.

    pin_threads(threads, device)   # in the CLI, before anything imports torch
    unpin()                        # in a forked child: run on every CPU again
"""
from __future__ import annotations

import glob
import os
import sys

_VARIABLES = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")
# set by launchers of several processes (torchrun, Slurm, Open MPI, MPICH): each would pin its
# threads to the same first cores
_LAUNCHERS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK")
_original: set[int] | None = None  # the CPUs this process could use before any pinning


def pin_threads(threads: int, device: str = "auto") -> bool:
    """Pin torch's threads, one per core, when a CPU run uses every core (``threads`` 0, torch's
    default, or as many as there are CPUs) and nothing else asks otherwise. Not pinned: fewer
    threads (pinned, they would take the first cores even where another job runs, and could not
    move off a busy one), training on a GPU (nothing to gain, and every job's main thread would
    share CPU 0), a launcher of several processes (they would share the first cores), OpenMP
    placement already set (OMP_PROC_BIND=false turns this off), or torch already started."""
    global _original
    if not sys.platform.startswith("linux") or "torch" in sys.modules or not _on_cpu(device):
        return False
    if any(name in os.environ for name in (*_VARIABLES, *_LAUNCHERS)):
        return False
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2 or threads not in (0, len(cpus)):
        return False
    _original = cpus
    os.environ["OMP_PROC_BIND"], os.environ["OMP_PLACES"] = "close", "cores"
    return True


def _on_cpu(device: str) -> bool:
    """Whether a run on ``device`` trains on the CPU; for "auto", whether no GPU's device files
    exist (NVIDIA's, or AMD's for ROCm), checked without importing torch."""
    if device == "auto":
        return not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))
    return device == "cpu"


def unpin() -> None:
    """Let this process run on every CPU it could before pinning. A forked child inherits the
    pinned core of the thread that forked it; without this, the figures drawn "in parallel" by
    digits.forked would share that one core with the parent."""
    if _original is not None:
        os.sched_setaffinity(0, _original)
