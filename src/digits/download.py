"""Finding MNIST on disk, and downloading it from the public mirrors when it is not there.

Search order: the ``data_dir`` argument (``--data-dir``), ``$DIGITS_DATA_DIR``, the user cache
(``$XDG_CACHE_HOME/digits/mnist`` if that is an absolute path, else ``~/.cache/digits/mnist``). If
none holds the four files they are downloaded into the first of those that was given.

    folder = find_mnist()               # a Path holding the four IDX files
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .atomic import lock_temp, remove_stale_temps, sync_folder, temp_path
from .cache import cache_root
from .data import FILES
from .errors import DataError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the PyTorch project's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",  # the original; answers 404 since 2023
)
# name -> (md5 of the .gz as the mirrors serve it, md5 of the uncompressed IDX content)
MD5 = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}
ENV_VAR = "DIGITS_DATA_DIR"
_TIMEOUT_S = 30


def cache_dir() -> Path:
    return cache_root() / "mnist"


def _has_all(folder: Path) -> bool:
    return all((folder / f"{n}.gz").exists() or (folder / n).exists() for n in FILES)


def candidates(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched, in order."""
    found = [Path(d).expanduser() for d in (data_dir, os.environ.get(ENV_VAR)) if d]
    return found + [cache_dir()]


def find_mnist(data_dir: str | Path | None = None, download: bool = True,
               mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """Return a folder holding the four MNIST files, downloading them if needed."""
    places = candidates(data_dir)
    for folder in places:
        if _has_all(folder):
            return folder
    looked = ", ".join(str(p) for p in places)
    if not download:
        raise DataError(f"MNIST not found (looked in {looked}); pass --data-dir DIR holding the four "
                        f"IDX files, set {ENV_VAR}, or allow the download")
    target = places[0]
    for name in FILES:
        if not ((target / f"{name}.gz").exists() or (target / name).exists()):
            download_file(name, target, mirrors)
    return target


def file_matches(path: Path, name: str) -> bool:
    """True if ``path`` is the named MNIST file: its own md5 or its uncompressed content's matches
    (files recompressed locally differ from the mirrors' .gz but not in content)."""
    gz_md5, raw_md5 = MD5[name]
    data = path.read_bytes()
    if hashlib.md5(data).hexdigest() in (gz_md5, raw_md5):
        return True
    try:
        return hashlib.md5(gzip.decompress(data)).hexdigest() == raw_md5
    except (OSError, EOFError, ValueError, zlib.error):
        return False


def download_file(name: str, folder: Path, mirrors: tuple[str, ...] = MIRRORS,
                  progress: bool = True) -> Path:
    """Download ``name``.gz into ``folder`` from the first mirror that serves a verified copy."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {folder} for the MNIST download: {e.strerror or e}") from None
    final = folder / f"{name}.gz"
    remove_stale_temps(final, ".part")  # left by a download that was killed (SIGKILL, power loss)
    partial = temp_path(final, suffix=".part")
    failures: list[str] = []
    try:
        if _try_mirrors(name, partial, mirrors, progress, failures):
            return final
    except _WriteFailed as e:  # every other mirror would fail the same way: ask none of them
        raise DataError(f"cannot write {folder}: {e.error.strerror or e.error}; choose a writable "
                        f"--data-dir (or ${ENV_VAR}, which is used without --data-dir)") from None
    finally:  # whatever ended the download, Ctrl-C included, leaves no partial file behind
        with contextlib.suppress(OSError):  # must not hide the exception that is ending it
            partial.unlink(missing_ok=True)
    raise DataError(f"could not download {name}.gz ({'; '.join(failures)}); without internet, copy "
                    f"the four MNIST .gz files into {folder} or point {ENV_VAR} at them")


def _try_mirrors(name: str, partial: Path, mirrors: tuple[str, ...], progress: bool,
                 failures: list[str]) -> bool:
    """Download into ``partial`` from each mirror in turn until a copy verifies, then move it into
    place; True if one did. Why each mirror failed is appended to ``failures``."""
    final = partial.parent / f"{name}.gz"
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            _fetch(url, partial, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
            failures.append(f"{url}: {reason}")
            continue
        try:
            verified = file_matches(partial, name)
            if verified:
                os.replace(partial, final)  # atomic: a file named like the real one is always complete
        except FileNotFoundError:  # deleted by something else sharing the folder (an older digits)
            if _verified(final, name):  # by one that finished the same download, say
                return True
            failures.append(f"{url}: its partial file {partial.name} was deleted while it downloaded "
                            "(by another program using the folder?)")
            continue
        except OSError as e:  # reading back or renaming in the data folder: not the mirror's fault
            raise _WriteFailed(e) from None
        if verified:
            sync_folder(final.parent)
            return True
        failures.append(f"{url}: md5 mismatch")
    return False


def _verified(path: Path, name: str) -> bool:
    try:
        return file_matches(path, name)
    except OSError:
        return False


class _WriteFailed(Exception):
    """Writing the download into the data folder failed: not the mirror's fault."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


@contextlib.contextmanager
def _writing():
    try:
        yield
    except OSError as e:
        raise _WriteFailed(e) from None


def _fetch(url: str, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    with _writing():  # before contacting the mirror, which can take 30 s to time out
        out = open(dest, "wb")
    lock_temp(out)  # another host's or container's digits sees it is being written
    request = urllib.request.Request(url, headers={"User-Agent": "digits"})
    with out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  disable=not progress, file=sys.stderr, leave=False) as bar:
            received = 0
            while chunk := response.read(1 << 16):
                with _writing():  # a full disk is not the mirror's fault either
                    out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        with _writing():  # flushed here, not by close(), whose failure would be blamed on the mirror
            out.flush()
            os.fsync(out.fileno())  # on disk before it is renamed, like every file atomic.py writes
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")
