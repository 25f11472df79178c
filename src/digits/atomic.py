"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never part.

Data goes to a hidden temporary sibling (``.NAME.HOST.PID.tmp``), is flushed to disk, then renamed
over the target. A process killed mid-write leaves only that temporary file, which no reader looks
for (it does not end in the target's suffix) and the next successful write of the same target
removes. The host name is in it because a folder can be shared (an NFS home, a cache mounted into
several containers): a PID says whether a writer is alive only on its own host, in its own PID
namespace, so another host's temporary file is left alone until it is an hour old.

    atomic_write("runs/x/metrics.json", lambda f: f.write(data))   # DigitsError if it cannot
"""
from __future__ import annotations

import errno
import glob
import os
import re
import socket
import time
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import DigitsError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the host name and PID rules still apply
    fcntl = None

# a temporary file untouched this long is stale whoever wrote it: a live writer touches its file far
# more often (a download that stops for 30 s is abandoned, see download.py)
STALE_AFTER_S = 3600
_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"  # no dots: the name is split on them

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


def temp_path(path: Path, pid: int | None = None, suffix: str = ".tmp", host: str | None = None) -> Path:
    """The temporary sibling a writer (this process, or ``pid`` on ``host``) uses for ``path``."""
    return path.with_name(f".{path.name}.{host or _HOST}.{os.getpid() if pid is None else pid}{suffix}")


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
    """Delete temporary siblings ``.NAME.HOST.PID<suffix>`` of ``path`` left by writers that no
    longer run (killed mid-write): this host's whose PID is gone, and any host's untouched for
    STALE_AFTER_S. One a writer holds locked (lock_temp) is never deleted: on one kernel the lock
    is seen across PID namespaces (containers that share this host name)."""
    removed = []
    own = temp_path(path, suffix=suffix)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"):
        # (HOST.)PID: earlier versions left the host out; another target's (NAME.pt...) has more dots
        match = re.fullmatch(r"(?:([A-Za-z0-9_-]+)\.)?(\d+)", tmp.name[len(path.name) + 2:-len(suffix)])
        if match and tmp != own and _stale(tmp, match[1], int(match[2])):
            _remove(tmp)
            removed.append(tmp)
    return removed


def _stale(tmp: Path, host: str | None, pid: int) -> bool:
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:  # gone already, or not ours to look at
        return False
    dead = age > STALE_AFTER_S or (host == _HOST and not _alive(pid))
    return dead and not _locked(tmp)


def lock_temp(f) -> None:
    """Mark the open temporary file ``f`` as being written (an advisory lock, released when it is
    closed), so that remove_stale_temps spares it even where its PID cannot be seen."""
    if fcntl is not None:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (OSError, ValueError, AttributeError):  # no locks here: the name still protects it
            pass


def _locked(tmp: Path) -> bool:
    if fcntl is None:
        return False
    try:  # O_NONBLOCK: a named pipe under a temporary file's name must not block the open
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:  # shared: NFS emulates flock with byte-range locks, whose exclusive kind needs write access
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


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
