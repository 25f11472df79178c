"""Run two lists of independent jobs at once: one in a forked child process, one in this process.

For work that holds Python's GIL, such as drawing figures with matplotlib, where threads would
take turns. Only on Linux (fork is unsafe with macOS's system frameworks and absent on Windows);
elsewhere the jobs run one after the other. A child's failure becomes the same DigitsError in
the parent, after the parent's own jobs have run.

    run_both([lambda: draw("a.png")], [lambda: draw("b.png")])
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

from .affinity import unpin
from .errors import DigitsError

Jobs = list[Callable[[], object]]


def _run_child(jobs: Jobs, write_fd: int) -> None:
    status = 0
    try:
        unpin()  # the parent's thread that forked may be pinned to one core (affinity.py)
        torch = sys.modules.get("torch")  # not imported just for this
        if torch is not None:
            torch.set_num_threads(1)  # as torch's DataLoader workers do after a fork
        for job in jobs:
            job()
    except DigitsError as e:
        os.write(write_fd, str(e).encode())
        status = 1
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        os.write(write_fd, traceback.format_exc().encode())
        status = 2
    finally:
        os._exit(status)  # never return into the parent's code (no atexit, no flushing twice)


def run_both(here: Jobs, there: Jobs) -> None:
    """Run ``there`` in a forked child while ``here`` runs in this process; wait for both."""
    if not there or not sys.platform.startswith("linux"):
        for job in here + there:
            job()
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_child(there, write_fd)
    os.close(write_fd)
    try:
        for job in here:
            job()
    finally:
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace").strip()
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 1:
        raise DigitsError(message)
    if code != 0:
        raise RuntimeError(f"a forked worker failed (exit code {code}):\n{message}")
