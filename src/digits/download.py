"""Finding MNIST on disk, and downloading it from the public mirrors when it is not there.

Search order: the ``data_dir`` argument (``--data-dir``), ``$DIGITS_DATA_DIR``, the user cache
(``$XDG_CACHE_HOME/digits/mnist`` if that is an absolute path, else ``~/.cache/digits/mnist``). If
none holds the four files, the missing ones are downloaded into the first of those that was given,
from ``$DIGITS_MNIST_MIRROR`` (if set) and then the public mirrors.

    folder = find_mnist()               # a Path holding the four IDX files
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .atomic import lock_temp, remove_stale_temps, sync_folder, temp_path
from .cache import cache_root
from .data import FILES, accepted_names, mnist_file
from .errors import DataError, DigitsError
from .outpath import file_in_the_way, make_folder

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
MIRROR_ENV = "DIGITS_MNIST_MIRROR"  # URLs of folders holding the four .gz files, tried before MIRRORS
# What a mirror must keep up, else the next one is tried; module constants so tests can shrink them.
# Generous for slow links: the largest file (9.9 MB) may take 2.7 hours at the minimum rate.
_TIMEOUT_S = 30  # seconds with nothing received, connecting or mid-file (a stalled mirror)
_MIN_RATE = 1000  # bytes per second, averaged over each _RATE_WINDOW_S (a mirror that trickles)
_RATE_WINDOW_S = 60
_WRITABLE = f"choose a writable --data-dir (or ${ENV_VAR}, which is used without --data-dir)"


def cache_dir() -> Path:
    return cache_root() / "mnist"


def _has_all(folder: Path) -> bool:
    return all(mnist_file(folder, n) is not None for n in FILES)


def candidates(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched, in order. An empty ``data_dir`` is refused: it would mean no
    --data-dir at all, silently ($DIGITS_DATA_DIR set empty counts as unset, as for most variables)."""
    if isinstance(data_dir, str) and not data_dir:
        raise DataError(f"--data-dir is empty; name a folder, or leave it out to use ${ENV_VAR} or "
                        f"the cache ({cache_dir()})")
    found = [Path(d).expanduser() for d in (data_dir, os.environ.get(ENV_VAR)) if d]
    return list(dict.fromkeys(found + [cache_dir()]))  # each once, in order


def mirror_list() -> tuple[str, ...]:
    """The mirrors tried, in order: those in $DIGITS_MNIST_MIRROR (space-separated), then MIRRORS."""
    own = []
    for url in os.environ.get(MIRROR_ENV, "").split():
        if not url.lower().startswith(("http://", "https://", "file://")):
            raise DataError(f"${MIRROR_ENV}: {url!r} is not an http://, https:// or file:// URL; set it "
                            "to the URL of a folder holding the four MNIST .gz files, or unset it")
        own.append(url if url.endswith("/") else f"{url}/")
    return (*own, *MIRRORS)


def find_mnist(data_dir: str | Path | None = None, download: bool = True,
               mirrors: tuple[str, ...] | None = None) -> Path:
    """Return a folder holding the four MNIST files, downloading the missing ones if needed
    (from ``mirrors``, by default mirror_list())."""
    places = candidates(data_dir)
    for folder in places:
        if _has_all(folder):
            return folder
    if not download:
        looked = ", ".join(f"{p} ({_lacks(p)})" for p in places)
        raise DataError(f"MNIST not found: looked in {looked}; {_EXPECTED}; pass --data-dir DIR holding "
                        f"them, set {ENV_VAR}, or allow the download (leave out --no-download)")
    mirrors = mirror_list() if mirrors is None else mirrors  # a bad $DIGITS_MNIST_MIRROR: before any folder is made
    target = places[0]
    made = _absent_folders(target.resolve())  # (`new/../data` makes new/ but never data/, which it may hold)
    try:
        _make_folder(target)
        missing = [name for name in FILES if mnist_file(target, name) is None]
        size = sum(download_file(name, target, mirrors).stat().st_size for name in missing)
    except BaseException:  # Ctrl-C too
        # an empty folder left behind (~/.cache/digits/mnist after a download without internet)
        # looks like a cache that holds something; files already downloaded are kept for next time
        _remove_if_empty(made)
        raise
    odd = _unrecognised(target)
    amount = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
    print(f"downloaded MNIST ({len(missing)} file{'s' * (len(missing) != 1)}, {amount}) into "
          f"{target}" + (f"; not used, as not recognised: {odd}" if odd else ""), file=sys.stderr)
    return target


_EXPECTED = (f"the four files are {', '.join(FILES[:-1])} and {FILES[-1]}, each .gz or not (any letter "
             f"case, or dotted as Kaggle has them: {accepted_names(FILES[0])[-1]})")


def _lacks(folder: Path) -> str:
    """What ``folder`` lacks, in a few words: why it does not count as MNIST."""
    blocker = file_in_the_way(folder)
    if blocker is not None:
        return "a file, not a folder" if blocker == folder else f"{blocker} is a file, not a folder"
    if not folder.is_dir():
        return "does not exist"
    missing = [name for name in FILES if mnist_file(folder, name) is None]
    said = "none of the four files" if len(missing) == len(FILES) else "no " + " or ".join(missing)
    odd = _unrecognised(folder)
    return said + (f"; not recognised: {odd}" if odd else "")


def _unrecognised(folder: Path, shown: int = 3) -> str:
    """Files in ``folder`` named like MNIST files that are not taken for one (a .zip, a misspelling),
    as a few words; empty if none."""
    used = {mnist_file(folder, name) for name in FILES}
    try:
        odd = sorted(e for e in os.listdir(folder) if not e.startswith(".") and folder / e not in used
                     and any(word in e.lower() for word in ("ubyte", "idx", "mnist")))
    except OSError:
        return ""
    more = f" and {len(odd) - shown} more" if len(odd) > shown else ""
    return ", ".join(odd[:shown]) + more


def _absent_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what making it makes."""
    absent = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        absent.append(path)
    return absent


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: rmdir refuses a folder that holds
    anything, whoever put it there meanwhile, and then its parents hold it too."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return


def _make_folder(folder: Path) -> None:
    what = f"{folder} for the MNIST download"
    try:
        make_folder(folder, what)
    except DigitsError as e:  # a file where the folder must be
        raise DataError(f"{e}; choose another --data-dir (or ${ENV_VAR}, which is used without "
                        "--data-dir)") from None
    except OSError as e:  # read-only file system, permission denied
        raise DataError(f"cannot create {what}: {e.strerror or e}; {_WRITABLE}") from None


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


def download_file(name: str, folder: Path, mirrors: tuple[str, ...] | None = None,
                  progress: bool = True) -> Path:
    """Download ``name``.gz into ``folder`` from the first mirror that serves a verified copy."""
    mirrors = mirror_list() if mirrors is None else mirrors
    _make_folder(folder)
    final = folder / f"{name}.gz"
    remove_stale_temps(final, ".part")  # left by a download that was killed (SIGKILL, power loss)
    partial = temp_path(final, suffix=".part")
    failures: list[str] = []
    try:
        if _try_mirrors(name, partial, mirrors, progress, failures):
            return final
    except _WriteFailed as e:  # every other mirror would fail the same way: ask none of them
        raise DataError(f"cannot write {folder}: {e.error.strerror or e.error}; {_WRITABLE}") from None
    finally:  # whatever ended the download, Ctrl-C included, leaves no partial file behind
        with contextlib.suppress(OSError):  # must not hide the exception that is ending it
            partial.unlink(missing_ok=True)
    raise DataError(f"could not download {name}.gz ({'; '.join(failures)}); without internet, copy "
                    f"the four MNIST .gz files into {folder} or point {ENV_VAR} at them (or set "
                    f"{MIRROR_ENV} to a mirror you can reach)")


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
            failures.append(f"{url}: {_reason(e)}")
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


def _reason(error: Exception) -> str:
    """Why a mirror failed, in a few words."""
    if isinstance(error, urllib.error.HTTPError):
        return str(error)  # HTTP Error 404: Not Found
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, TimeoutError):  # socket.timeout, connecting or mid-file
        return f"timed out (nothing received for {_TIMEOUT_S:g} s)"
    return str(reason)


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


class _TooSlow(OSError):
    """A mirror that sends, but too slowly to finish in reasonable time."""


def _fetch(url: str, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    with _writing():  # before contacting the mirror, which can take 30 s to time out
        out = open(dest, "wb")
    lock_temp(out)  # another host's or container's digits sees it is being written
    request = urllib.request.Request(url, headers={"User-Agent": "digits"})
    with out, urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        read = getattr(response, "read1", response.read)  # what has arrived: read() waits for all it asks
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  disable=not progress, file=sys.stderr, leave=False) as bar:
            received, window_start, window_bytes = 0, time.monotonic(), 0
            while chunk := read(1 << 16):
                with _writing():  # a full disk is not the mirror's fault either
                    out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                window_bytes += len(chunk)
                elapsed = time.monotonic() - window_start
                if elapsed >= _RATE_WINDOW_S:
                    if window_bytes < _MIN_RATE * elapsed:
                        raise _TooSlow(f"too slow: {window_bytes / elapsed / 1000:.2g} kB/s over "
                                       f"{elapsed:.0f} s, under the minimum of {_MIN_RATE / 1000:g} kB/s")
                    window_start, window_bytes = time.monotonic(), 0
        with _writing():  # flushed here, not by close(), whose failure would be blamed on the mirror
            out.flush()
            os.fsync(out.fileno())  # on disk before it is renamed, like every file atomic.py writes
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")
