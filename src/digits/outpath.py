"""Where a command may write, checked before it does any work: an output never replaces one of the
command's own inputs (atomic_write renames over it, exit 0), and a name that cannot be a file is
refused in one line that says why (mkdir says only "File exists" or "Not a directory").

    check_output("run/model.ts", ["run/checkpoint.pt"], "--out")   # DigitsError if one file
    make_folder("runs/x/figures")                                   # mkdir -p, in one clear line
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DigitsError


# what a desktop's file manager leaves in a folder it has shown: not a user's file, so a folder
# holding only these is as good as empty to a command that writes its output there
DESKTOP_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def contents(folder: str | Path) -> list[str]:
    """The sorted names in ``folder``, leaving out DESKTOP_FILES (OSError if it cannot be read)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in DESKTOP_FILES)


def check_output(out: str | Path, inputs=(), flag: str = "--out") -> Path:
    """``out`` as a Path, or DigitsError if it is a folder, lies under a file, or is one of
    ``inputs`` (under another name, a symlink or a hard link included)."""
    out = Path(out)
    if out.is_dir():
        raise DigitsError(f"{flag} {out} is a folder; name the file to write (in it or elsewhere)")
    blocker = file_in_the_way(out.parent)
    if blocker is not None:
        raise DigitsError(f"{flag} {out}: {blocker} is a file, not a folder")
    for path in inputs:
        if same_file(out, path):
            which = "one of the inputs" if str(out) == str(path) else f"the same file as the input {path}"
            raise DigitsError(f"{flag} {out} is {which}; writing it would replace it, so choose another name")
    return out


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the same name is still the same file
        return Path(a).resolve() == Path(b).resolve()


def file_in_the_way(folder: str | Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists, if it is not a folder."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def make_folder(folder: str | Path, what: str | None = None) -> Path:
    """``mkdir -p folder``; a file where a folder must be is named ("cannot create WHAT: ...",
    WHAT by default the folder). Other OSErrors (a read-only disk) propagate for the caller to word."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = file_in_the_way(folder)
        if blocker is None:
            raise
        raise DigitsError(f"cannot create {what or folder}: {blocker} is a file, not a folder") from None
    return folder
