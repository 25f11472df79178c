"""The run folder: what --out may be (new, empty or a previous run's; writable), one run at a time
in it (a flock on the folder), and what a fresh run or a --resume removes there of a previous run's.

    out = prepare_out("runs/seed", RunConfig())   # checked, held, old results gone, config.json written
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path

from .config import RunConfig
from .errors import DigitsError
from .outpath import contents, file_in_the_way, make_folder
from .report import write_json

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

RESULTS = ("metrics.json", "report.md")  # what a run writes once it has finished, from its config.json
# what a run writes as it trains: a fresh (not --resume) run removes a previous run's, which would
# mix with its own (TensorBoard drew both runs' curves in one; an old checkpoint.pt beside the new
# config.json until the first epoch ends)
RUN_FILES, RUN_FOLDERS = ("checkpoint.pt",), ("tb", "figures")
_CONFIG_KEYS = frozenset(f.name for f in fields(RunConfig))
_SECTIONS = frozenset(f.name for f in fields(RunConfig) if is_dataclass(f.default_factory))
_held: dict[tuple[int, int], int] = {}  # run folders this process writes: (device, inode) -> the fd locking it


def check_out(out: str | Path) -> Path:
    """The refusals of ``out`` that change nothing (run before the data is read and before
    prepare_out touches it): a file in the way, an existing folder that is not a run folder (a
    rerun would remove or replace files of the user's: report.md, metrics.json, config.json,
    checkpoint.pt), a folder this process cannot write in or create."""
    out = Path(out)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise DigitsError(f"cannot create output folder {out}: {blocker} is a file, not a folder")
    if out.is_dir():
        _check_run_folder(out)
        if not os.access(out, os.W_OK | os.X_OK):
            raise _cannot_write(out, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
        return out
    parent = next((p for p in out.parents if p.is_dir()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _cannot_write(out, PermissionError(errno.EACCES, os.strerror(errno.EACCES)), parent)
    return out


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` (an existing one) may be written by a run: it is empty, holds a digits
    run's config.json (a JSON object of RunConfig's settings, its seed among them), or holds only
    what a run that failed before writing its config.json leaves (an empty figures/, a temporary
    .config.json.HOST.PID.tmp of a killed write); a file manager's .DS_Store and the like are not
    counted (outpath.contents)."""
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            values = json.loads(config.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return (isinstance(values, dict) and "seed" in values and set(values) <= _CONFIG_KEYS
                and all(isinstance(values[k], dict) for k in _SECTIONS & set(values)))
    return all(_left_before_config(folder / name) for name in contents(folder))


def _left_before_config(path: Path) -> bool:
    if path.name == "figures" and path.is_dir() and not path.is_symlink():
        return not contents(path)
    return path.name.startswith(".config.json.") and path.name.endswith(".tmp") and path.is_file()


def _check_run_folder(out: Path) -> None:
    try:
        if is_run_folder(out):
            return
        names = contents(out)
    except OSError as e:
        raise DigitsError(f"cannot read the output folder {out}: {e.strerror or e}") from None
    if "config.json" in names:
        what = "its config.json is not one a run wrote"
    else:
        what = "it holds " + ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        what += " and no config.json"
    raise DigitsError(f"--out {out} is not a digits run folder ({what}); a run would replace or remove files "
                      "in it: give a new or empty folder, or a previous run's")


def _cannot_write(out: Path, error: OSError, parent: Path | None = None) -> DigitsError:
    """A folder that exists (or ``parent``, the nearest that does, of one to create) refusing a write."""
    where = parent or out
    read_only = _read_only_fs(where) or error.errno == errno.EROFS
    if parent is not None or not out.is_dir():
        why = os.strerror(errno.EROFS) if read_only else (error.strerror or str(error))
        return DigitsError(f"cannot create output folder {out}: {why}")
    if read_only:
        why = "read-only file system"
    elif error.errno in (errno.EACCES, errno.EPERM):
        why = "read-only to this user: permission denied"
    else:
        why = error.strerror or str(error)
    return DigitsError(f"cannot write in {out} ({why}; choose a writable --out)")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        return False


def lock_out(out: str | Path, holder: str = "digits run") -> None:
    """Hold ``out`` (an existing folder) as this process's run folder until release_out or the
    process ends: a second run into it, in another process, is refused in one line ("another
    ``holder`` is writing in OUT"). The lock is flock(2) on the folder itself: no lock file to
    mistake for a result or to block a later run, and the system drops it when the holder dies (a
    killed run's folder is free to --resume into)."""
    if fcntl is None:
        return  # (Windows: no flock; runs are not guarded there)
    out = Path(out)
    try:
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise _cannot_write(out, e) from None
    key = _key(os.fstat(fd))
    if key in _held:  # this process holds it already (run's lock_out, then its prepare_out's)
        os.close(fd)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DigitsError(f"another {holder} is writing in {out}; wait for it to end (or stop it), or "
                          "choose another --out") from None
    except OSError:
        pass  # a filesystem without flock (some network mounts): unguarded, as before
    _held[key] = fd


def release_out(out: str | Path) -> None:
    """Let other processes write ``out`` again (lock_out's lock)."""
    try:
        key = _key(os.stat(out))
    except OSError:
        return  # removed meanwhile: its lock goes when the process ends
    fd = _held.pop(key, None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor drops the flock


def _key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def prepare_out(out: str | Path, config: RunConfig, figures: bool = True,
                resume: str | Path | None = None) -> Path:
    """Create the run folder (with figures/ when they will be drawn), hold it (lock_out) and write
    config.json, failing early if it is not writable or not a run folder (check_out). A previous
    run's results there are removed first: until this run writes its own (or for good, if it fails)
    they would sit beside a config.json they do not describe. So are its checkpoint, TensorBoard
    logs and figures, which would mix with this run's, unless ``resume`` (the checkpoint the run
    resumes from) is the folder's own checkpoint.pt: that run goes on in its folder. A checkpoint
    from elsewhere starts the folder afresh (run a's logs are not appended to b's). The caller
    releases the folder (release_out) when the run ends; else the process's end does."""
    out = check_out(out)
    try:
        make_folder(out, f"output folder {out}")
    except OSError as e:
        raise _cannot_write(out, e) from None
    lock_out(out)
    goes_on = _own_checkpoint(out, resume)
    _remove_results(out, RESULTS if goes_on else RESULTS + RUN_FILES, () if goes_on else RUN_FOLDERS)
    if figures:
        try:
            make_folder(out / "figures", f"output folder {out}")
        except OSError as e:
            raise _cannot_write(out, e) from None
    write_json(out / "config.json", config.to_dict())
    return out


def _own_checkpoint(out: Path, resume: str | Path | None) -> bool:
    """Whether ``resume`` is ``out``'s checkpoint.pt itself (the same file, however it is named)."""
    if not isinstance(resume, (str, os.PathLike)):
        return False
    try:
        return os.path.samefile(resume, out / "checkpoint.pt")
    except OSError:  # (no checkpoint.pt in out: resume is another file)
        return False


def _remove_results(out: Path, names=RESULTS, folders=()) -> None:
    """The files ``names`` and the folders ``folders`` a previous run wrote in ``out``: a folder
    under a file's name (or a file under a folder's) is not a run's, and is left for the write to name."""
    for name, folder in [(n, False) for n in names] + [(n, True) for n in folders]:
        path = out / name
        try:
            if path.is_symlink() or (path.is_file() and not folder):  # (a read-only folder refuses
                path.unlink()                                           # unlink even for a missing file)
            elif path.is_dir() and folder:
                shutil.rmtree(path)
        except OSError as e:
            raise DigitsError(f"cannot remove the previous run's {path}: {e.strerror or e} "
                              "(choose a writable --out)") from None
