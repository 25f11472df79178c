"""The download path against HTTP servers on loopback: failing, corrupt and good mirrors."""
import errno
import http.server
import os
import stat
import threading
from pathlib import Path

import pytest

from digits import atomic, download
from digits.atomic import temp_path
from digits.data import FILES, load_mnist
from digits.errors import DataError


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "good"
    source: Path = Path()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if self.mode == "missing":
            self.send_error(404)
            return
        body = (self.source / name).read_bytes()
        if self.mode == "corrupt":
            body = body[:100] + bytes(len(body) - 100)
        self.send_response(200)
        claimed = len(body)
        if self.mode == "short":  # the connection drops half-way
            body = body[: len(body) // 2]
        self.send_header("Content-Length", str(claimed))
        self.end_headers()
        if self.mode == "stall":  # a little, then nothing until the test ends
            self.wfile.write(body[:1000])
            self.wfile.flush()
            self.done.wait(30)
            return
        if self.mode == "trickle":  # 100 bytes every 50 ms: 2 kB/s
            for start in range(0, len(body), 100):
                if self.done.wait(0.05):
                    return
                try:
                    self.wfile.write(body[start:start + 100])
                    self.wfile.flush()
                except OSError:  # the client gave up on it
                    return
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(request):
    """mirror(mode) starts a loopback mirror and returns its URL; mirror.hits: the paths requested
    of any of them. Only a mirror that serves files needs the real MNIST files."""
    servers, done = [], threading.Event()

    def start(mode: str) -> str:
        source = Path() if mode == "missing" else request.getfixturevalue("real_mnist")
        handler = type("H", (_Handler,), {"mode": mode, "source": source, "hits": start.hits, "done": done})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()  # (shutdown waits a poll)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/mnist/"

    start.hits = []
    yield start
    done.set()  # releases the stalled and trickling handlers
    for server in servers:
        server.shutdown()


def test_falls_back_past_missing_and_corrupt_mirrors(mirror, tmp_path):
    mirrors = (mirror("missing"), mirror("corrupt"), mirror("good"))
    folder = download.find_mnist(tmp_path / "d", mirrors=mirrors)
    assert folder == tmp_path / "d"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in FILES)
    assert all(download.file_matches(folder / f"{n}.gz", n) for n in FILES)
    assert len(load_mnist(folder, val_size=0).train) == 60000


def test_all_mirrors_failing_leaves_no_file_and_says_what_happened(mirror, tmp_path):
    mirrors = (mirror("missing"), mirror("corrupt"), mirror("short"))
    with pytest.raises(DataError) as info:
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, mirrors, progress=False)
    message = str(info.value)
    assert "404" in message and "md5 mismatch" in message and "connection closed" in message
    assert "copy the four MNIST" in message
    assert list(tmp_path.iterdir()) == []  # no partial file that looks complete


def test_an_unwritable_data_folder_is_one_error_before_any_mirror_is_asked(mirror, tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()  # exists, but refuses new files (read-only filesystem, another user's folder)

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    url = mirror("missing")
    with monkeypatch.context() as patch, pytest.raises(DataError) as info:
        patch.setattr(download, "open", refuse, raising=False)
        download.find_mnist(folder, mirrors=(url, url))
    assert mirror.hits == []  # no mirror contacted (each can take 30 s to time out)
    assert str(info.value) == (f"cannot write {folder}: Permission denied; choose a writable "
                               "--data-dir (or $DIGITS_DATA_DIR, which is used without --data-dir)")
    assert list(folder.iterdir()) == []
    # the same call with a writable folder does ask the mirror
    with pytest.raises(DataError, match="404"):
        download.find_mnist(folder, mirrors=(url,))
    assert len(mirror.hits) == 1


def test_a_full_disk_is_not_blamed_on_the_mirror(mirror, tmp_path, monkeypatch):
    class Full:
        def __init__(self, path, mode):
            self.file = open(path, mode)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    mirrors = (mirror("good"), mirror("good"))
    monkeypatch.setattr(download, "open", Full, raising=False)
    with pytest.raises(DataError, match=r"^cannot write .*: No space left on device; choose a writable"):
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, mirrors, progress=False)
    assert len(mirror.hits) == 1  # the second mirror would fill the disk the same way
    assert list(tmp_path.iterdir()) == []


def test_a_download_is_on_disk_before_and_after_it_is_renamed_into_place(mirror, tmp_path, monkeypatch):
    # as for every file atomic.py writes: without the fsyncs a power loss can leave the final name
    # pointing at an empty or partly written file, which the next run would take for MNIST
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    url = mirror("good")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    download.download_file("t10k-labels-idx1-ubyte", tmp_path, (url,), progress=False)
    assert events == ["fsync file", "rename", "fsync folder"]


def test_search_order_and_no_download_message(tiny_mnist, tmp_path, monkeypatch):
    assert download.find_mnist(tiny_mnist, download=False) == tiny_mnist
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tiny_mnist))
    assert download.find_mnist(None, download=False) == tiny_mnist
    assert download.find_mnist(tmp_path / "empty", download=False) == tiny_mnist  # falls through
    monkeypatch.delenv("DIGITS_DATA_DIR")
    with pytest.raises(DataError, match="MNIST not found: looked in .*empty.*cache"):
        download.find_mnist(tmp_path / "empty", download=False)


def test_cache_is_used_when_nothing_else_is_set(tiny_mnist, tmp_path, monkeypatch):
    cache = download.cache_dir()
    assert cache == tmp_path / "cache" / "digits" / "mnist"
    cache.parent.mkdir(parents=True)
    tiny_mnist.rename(cache)
    assert download.find_mnist(download=False) == cache


@pytest.mark.parametrize("xdg", ["relative/cache", ""])
def test_a_relative_or_empty_xdg_cache_home_is_ignored(xdg, tmp_path, monkeypatch):
    # the XDG Base Directory spec: relative paths are invalid and must be ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "digits" / "mnist"


def test_uncompressed_local_content_is_accepted(real_mnist, tmp_path):
    import gzip

    raw = gzip.decompress((real_mnist / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "x").write_bytes(raw)
    assert download.file_matches(tmp_path / "x", "t10k-labels-idx1-ubyte")
    (tmp_path / "x").write_bytes(raw[:-1] + b"\x07")
    assert not download.file_matches(tmp_path / "x", "t10k-labels-idx1-ubyte")


def _interrupted_fetch(url, dest, progress):
    dest.write_bytes(b"\x1f\x8b half a download")
    raise KeyboardInterrupt  # Ctrl-C while the bytes arrive


def test_ctrl_c_during_a_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_fetch", _interrupted_fetch)
    with pytest.raises(KeyboardInterrupt):
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, ("http://127.0.0.1:9/",), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_removes_the_empty_folders_it_made_and_only_those(mirror, tmp_path, monkeypatch):
    """Without internet the cache folder it made, ~/.cache/digits/mnist, was left behind empty."""
    url = mirror("missing")
    with pytest.raises(DataError, match="404"):
        download.find_mnist(mirrors=(url,))  # into the cache: $XDG_CACHE_HOME/digits/mnist
    assert not (tmp_path / "cache").exists()  # cache/, digits/ and mnist/ were all its own
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DataError, match="404"):
        download.find_mnist(mine / "a" / "b", mirrors=(url,))
    assert list(mine.iterdir()) == []  # the folder that was there stays, empty as it was

    def fetch_beside(url, dest, progress):  # something else writes into a folder it made, meanwhile
        (mine / "a" / "notes.txt").write_text("mine")
        raise OSError("no network")

    monkeypatch.setattr(download, "_fetch", fetch_beside)
    with pytest.raises(DataError, match="no network"):
        download.find_mnist(mine / "a" / "b", mirrors=("http://127.0.0.1:9/",))
    assert [p.name for p in mine.rglob("*")] == ["a", "notes.txt"]  # b went; a holds a file
    monkeypatch.setattr(download, "_fetch", _interrupted_fetch)
    with pytest.raises(KeyboardInterrupt):
        download.find_mnist(tmp_path / "new" / "d", mirrors=("http://127.0.0.1:9/",))
    assert not (tmp_path / "new").exists()  # Ctrl-C too
    monkeypatch.chdir(mine)  # `--data-dir new/../a`: a is the user's (empty now), not the download's
    (mine / "a" / "notes.txt").unlink()
    with pytest.raises(KeyboardInterrupt):
        download.find_mnist("new/../a", mirrors=("http://127.0.0.1:9/",))
    assert (mine / "a").is_dir()  # it was removed, as though the download had made it


def test_partial_files_of_killed_downloads_are_removed_by_the_next(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time
    import urllib.error

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    final = tmp_path / "t10k-labels-idx1-ubyte.gz"
    stale = temp_path(final, dead, ".part")
    running = temp_path(final, 1, ".part")  # pid 1 is alive: a download in progress
    other = temp_path(tmp_path / "train-labels-idx1-ubyte.gz", dead, ".part")  # another file's: not this call's
    # another host's download into a shared folder (multi-node torchrun, an NFS home): its PID is
    # not one of ours, so it is left alone, until an hour without a byte shows it was killed
    other_host = temp_path(final, dead, ".part", host="node2")
    abandoned = temp_path(final, dead, ".part", host="node3")
    for path in (stale, running, other, other_host, abandoned):
        path.write_bytes(b"part of a download")
    long_ago = time.time() - 2 * 3600
    os.utime(abandoned, (long_ago, long_ago))

    def offline(url, dest, progress):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download, "_fetch", offline)
    with pytest.raises(DataError, match="no network"):
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, ("http://127.0.0.1:9/",), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (running, other, other_host))


def _another_digits_cleans_up(monkeypatch, final: Path, host: str | None = None) -> None:
    """What download_file does first, as another host's or container's digits would: there, none
    of this process's PIDs is running."""
    with monkeypatch.context() as there:
        if host:
            there.setattr(atomic, "_HOST", host)
        there.setattr(atomic, "_alive", lambda pid: False)
        assert atomic.remove_stale_temps(final, ".part") == []


def test_a_download_is_not_deleted_by_another_hosts_digits(mirror, tmp_path, monkeypatch):
    # two nodes of a torchrun job download into one NFS cache at once: each cleans up before it
    # starts, and must not take the other's download for a killed one
    url = mirror("good")
    final = tmp_path / "t10k-labels-idx1-ubyte.gz"
    real_fetch = download._fetch

    def fetch(url, dest, progress):
        real_fetch(url, dest, progress)
        _another_digits_cleans_up(monkeypatch, final, host="node2")

    monkeypatch.setattr(download, "_fetch", fetch)
    assert download.download_file(final.name[:-3], tmp_path, (url,), progress=False) == final
    assert download.file_matches(final, "t10k-labels-idx1-ubyte")
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


@pytest.mark.skipif(atomic.fcntl is None, reason="no advisory locks (Windows)")
def test_a_download_is_not_deleted_by_a_container_with_this_host_name(mirror, tmp_path, monkeypatch):
    # containers sharing the host's name (host networking) and a cache, each in its own PID namespace
    url = mirror("good")
    final = tmp_path / "t10k-labels-idx1-ubyte.gz"

    def lock_temp(f):  # the download has begun: its part is open and being written
        atomic.lock_temp(f)
        _another_digits_cleans_up(monkeypatch, final)

    monkeypatch.setattr(download, "lock_temp", lock_temp)
    assert download.download_file(final.name[:-3], tmp_path, (url,), progress=False) == final
    assert download.file_matches(final, "t10k-labels-idx1-ubyte")


def test_a_partial_download_deleted_by_another_program_is_one_clear_line(real_mnist, tmp_path, monkeypatch):
    final = tmp_path / "t10k-labels-idx1-ubyte.gz"

    def fetch_then_lose_it(url, dest, progress):
        dest.write_bytes(b"\x1f\x8b part of it")
        dest.unlink()  # an older digits elsewhere, or someone tidying the folder

    monkeypatch.setattr(download, "_fetch", fetch_then_lose_it)
    with pytest.raises(DataError) as info:
        download.download_file(final.name[:-3], tmp_path, ("http://127.0.0.1:9/",), progress=False)
    assert "was deleted while it downloaded" in str(info.value) and "Errno" not in str(info.value)

    def fetch_while_another_finishes(url, dest, progress):
        final.write_bytes((real_mnist / final.name).read_bytes())  # the same download, elsewhere
        dest.write_bytes(b"")
        dest.unlink()

    monkeypatch.setattr(download, "_fetch", fetch_while_another_finishes)
    assert download.download_file(final.name[:-3], tmp_path, ("http://127.0.0.1:9/",), progress=False) == final
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_a_mirror_that_trickles_is_abandoned_for_the_next(mirror, tmp_path, monkeypatch):
    # a server that sends a little every few seconds never trips the per-read timeout
    monkeypatch.setattr(download, "_RATE_WINDOW_S", 0.3)
    monkeypatch.setattr(download, "_MIN_RATE", 20_000)  # bytes/s; the trickle sends 2,000
    slow = mirror("trickle")
    with pytest.raises(DataError) as info:
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, (slow,), progress=False)
    assert "too slow" in str(info.value) and "under the minimum of 20 kB/s" in str(info.value)
    good = mirror("good")
    assert download.download_file("t10k-labels-idx1-ubyte", tmp_path, (slow, good), progress=False).exists()
    assert mirror.hits == ["/mnist/t10k-labels-idx1-ubyte.gz"] * 3


def test_a_stalled_mirror_times_out_saying_after_how_long(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_TIMEOUT_S", 0.3)
    with pytest.raises(DataError, match=r"timed out \(nothing received for 0.3 s\)"):
        download.download_file("t10k-labels-idx1-ubyte", tmp_path, (mirror("stall"),), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_limits_on_a_mirror_allow_a_slow_link():
    # the largest file, 9.9 MB, at the minimum rate: under three hours; each limit names itself
    assert download._TIMEOUT_S >= 30 and 9.9e6 / download._MIN_RATE < 3 * 3600
    assert download._RATE_WINDOW_S >= 60


def test_the_missing_data_error_names_what_is_missing_and_the_names_expected(tiny_mnist, tmp_path):
    (tiny_mnist / "train-images-idx3-ubyte.gz").rename(tiny_mnist / "train-images-idx3-ubyte.zip")
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(DataError) as info:
        download.find_mnist(tiny_mnist, download=False)
    message = str(info.value)
    assert message.startswith(f"MNIST not found: looked in {tiny_mnist} (no train-images-idx3-ubyte; "
                              f"not recognised: train-images-idx3-ubyte.zip), {download.cache_dir()} "
                              "(does not exist); the four files are train-images-idx3-ubyte, train-labels-"
                              "idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each .gz or not")
    assert "any letter case" in message and "train-images.idx3-ubyte" in message
    with pytest.raises(DataError, match=r"looked in .*afile \(a file, not a folder\)"):
        download.find_mnist(tmp_path / "afile", download=False)
    with pytest.raises(DataError, match=r"looked in .*empty \(none of the four files\)"):
        download.find_mnist(Path(tmp_path / "empty").mkdir() or tmp_path / "empty", download=False)


def test_a_download_says_what_it_downloaded_and_where(mirror, tiny_mnist, capsys):
    (tiny_mnist / "t10k-labels-idx1-ubyte.gz").rename(tiny_mnist / "t10k-labels-idx1-ubyte.gz.bak")
    download.find_mnist(tiny_mnist, mirrors=(mirror("good"),))
    assert capsys.readouterr().err.endswith(
        f"downloaded MNIST (1 file, 4.5 kB) into {tiny_mnist}; not used, as not recognised: "
        "t10k-labels-idx1-ubyte.gz.bak\n")  # beside the .bak, which is not taken for it
    download.find_mnist(tiny_mnist, mirrors=(mirror("good"),))
    assert capsys.readouterr().err == ""  # found: nothing to say


def test_a_data_folder_that_cannot_be_created_says_what_to_do(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    folder = tmp_path / "mnt" / "d"
    with monkeypatch.context() as patch, pytest.raises(DataError) as info:
        patch.setattr(Path, "mkdir", read_only)
        download.find_mnist(folder, mirrors=("http://127.0.0.1:9/",))
    assert str(info.value) == (f"cannot create {folder} for the MNIST download: Read-only file system; choose "
                               "a writable --data-dir (or $DIGITS_DATA_DIR, which is used without --data-dir)")
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(DataError) as info:
        download.find_mnist(tmp_path / "afile", mirrors=("http://127.0.0.1:9/",))
    assert str(info.value).startswith(f"cannot create {tmp_path / 'afile'} for the MNIST download: "
                                      f"{tmp_path / 'afile'} is a file, not a folder; choose another --data-dir")


def test_an_empty_data_dir_is_refused(tmp_path, capsys):
    from digits.cli import main

    assert main(["show", "--data-dir", "", "--no-download", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == ("digits: error: --data-dir is empty; name a folder, or leave it out "
                                       f"to use $DIGITS_DATA_DIR or the cache ({download.cache_dir()})\n")


def test_a_mirror_of_ones_own_is_tried_first(mirror, tmp_path, monkeypatch):
    url = mirror("good")
    monkeypatch.setattr(download, "MIRRORS", ("http://127.0.0.1:9/",))  # never the internet from a test
    monkeypatch.setenv("DIGITS_MNIST_MIRROR", url.rstrip("/"))
    assert download.mirror_list() == (url, "http://127.0.0.1:9/")
    assert download.find_mnist(tmp_path / "d") == tmp_path / "d"
    assert sorted(mirror.hits) == sorted(f"/mnist/{name}.gz" for name in FILES)
    monkeypatch.setenv("DIGITS_MNIST_MIRROR", "mirror.example/mnist")
    with pytest.raises(DataError, match=r"^\$DIGITS_MNIST_MIRROR: 'mirror.example/mnist' is not an http"):
        download.find_mnist(tmp_path / "e")
    assert not (tmp_path / "e").exists()  # refused before the data folder is made
