"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never part.

Data goes to a hidden temporary sibling (``.NAME.PID.tmp``), is flushed to disk, then renamed over
the target. A process killed mid-write leaves only that temporary file, which no reader looks for
(it does not end in the target's suffix) and the next successful write of the same target removes.

    atomic_write("runs/x/metrics.json", lambda f: f.write(data))   # DigitsError if it cannot
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import DigitsError


_HINTS = {errno.ENOSPC: " (free some space or choose another --out)",
          errno.EDQUOT: " (free some space or choose another --out)",
          errno.EROFS: " (choose a writable --out)", errno.EACCES: " (choose a writable --out)"}


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a binary file that becomes ``path`` only once it is complete and synced."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        cause = os_error(e) if isinstance(e, Exception) and not isinstance(e, DigitsError) else None
        if cause is None:
            raise
        hint = _HINTS.get(cause.errno, "")
        raise DigitsError(f"cannot write {path}: {cause.strerror or cause}; the previous file, if "
                          f"any, is unchanged{hint}") from None
    sync_folder(path.parent)
    remove_stale_temps(path)
    return path


def temp_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, if any: torch and Pillow wrap a full disk in other exceptions
    (torch.save raises RuntimeError 'unexpected pos' while handling ENOSPC)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        suppressed = error.__suppress_context__ and error.__cause__ is None
        error = None if suppressed else error.__cause__ or error.__context__
    return None


def remove_stale_temps(path: Path, suffix: str = ".tmp") -> list[Path]:
    """Delete temporary siblings ``.NAME.PID<suffix>`` of ``path`` left by writers that no longer
    run (killed mid-write)."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*{suffix}"):
        pid = tmp.name[len(path.name) + 2:-len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(tmp)
            removed.append(tmp)
    return removed


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only folder refuses even this; the write failed before creating it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sync_folder(folder: Path) -> None:
    # the rename itself is durable only once the folder's entry is on disk (power loss)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)
