"""Atomic writes under failure: a full disk or read-only folder mid-write leaves the old file whole,
no temporary file behind, and one clear DigitsError (see tests/test_faults.py for real disks)."""
import errno
import os
import subprocess
import sys
import time

import pytest
import torch

from digits import atomic
from digits.atomic import atomic_write, os_error, remove_stale_temps, temp_path
from digits.checkpoint import describe, read_checkpoint, save_checkpoint
from digits.errors import DigitsError
from digits.models import create_model
from digits.report import write_json


class _FailingFile:
    """A real file whose writes fail with ``code`` once ``limit`` bytes are in it: a disk that fills."""

    def __init__(self, f, limit: int, code: int):
        self.f, self.limit, self.code, self.written = f, limit, code, 0

    def write(self, data) -> int:
        room = self.limit - self.written
        if len(data) > room:
            self.f.write(bytes(data[:max(room, 0)]))
            raise OSError(self.code, os.strerror(self.code))
        self.written += self.f.write(data)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fail_after(monkeypatch, limit: int, code: int = errno.ENOSPC) -> None:
    monkeypatch.setattr(atomic, "open", lambda p, m: _FailingFile(open(p, m), limit, code), raising=False)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "Read-only file system")])
def test_a_write_that_fails_part_way_keeps_the_old_file(tmp_path, monkeypatch, code, words):
    path = write_json(tmp_path / "metrics.json", {"old": True})
    _fail_after(monkeypatch, 5, code)
    with pytest.raises(DigitsError, match=f"cannot write .*metrics.json: {words}"):
        write_json(path, {"new": list(range(1000))})
    assert path.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_checkpoint_write_that_fails_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint.pt", create_model("seed"), describe("seed", {}), iter_num=1)
    _fail_after(monkeypatch, 100_000)  # inside the weights; torch turns ENOSPC into a RuntimeError
    with pytest.raises(DigitsError, match="checkpoint.pt: No space left on device"):
        save_checkpoint(path, create_model("seed"), describe("seed", {}), iter_num=2)
    assert read_checkpoint(path)["iter_num"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_figure_that_cannot_be_finished_is_not_left_half_written(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from digits.plots import plot_samples

    def savefig_onto_a_full_disk(self, f, **kwargs):  # Pillow writes to the file descriptor itself
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(4000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", savefig_onto_a_full_disk)
    with pytest.raises(DigitsError, match="samples.png: No space left on device"):
        plot_samples(torch.zeros(60, 1, 28, 28, dtype=torch.uint8), tmp_path / "figures" / "samples.png")
    assert list((tmp_path / "figures").iterdir()) == []


def test_errors_that_are_not_about_the_disk_pass_through(tmp_path):
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "x", lambda f: 1 / 0)
    assert list(tmp_path.iterdir()) == []


def test_os_error_finds_the_cause_behind_a_wrapper():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("unexpected pos 197824 vs 197728")  # what torch.save raises
    except RuntimeError as e:
        assert os_error(e).errno == errno.ENOSPC
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError:
            raise DigitsError("a message that already says it") from None
    except DigitsError as e:
        assert os_error(e) is None


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / "checkpoint.pt"
    stale = temp_path(path, int(dead.stdout))
    stale.write_bytes(b"half a checkpoint")
    running = temp_path(path, 1)  # pid 1 is alive: a writer that may still finish
    running.write_bytes(b"in progress")
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == []  # no reader mistakes them for checkpoints
    atomic_write(path, lambda f: f.write(b"whole"))
    assert not stale.exists() and running.exists() and path.read_bytes() == b"whole"
    assert remove_stale_temps(path) == []


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_temp_files_of_other_hosts_are_kept_until_an_hour_old(tmp_path):
    # a folder shared between hosts (an NFS home, a cache mounted into containers): a PID that is not
    # running here may be a writer running there
    path = tmp_path / "checkpoint.pt"
    dead = _dead_pid()
    other_host = temp_path(path, dead, host="node2")
    unknown_host = tmp_path / f".checkpoint.pt.{dead}.tmp"  # named by an earlier version: no host
    for tmp in (other_host, unknown_host):
        tmp.write_bytes(b"being written elsewhere")
    assert remove_stale_temps(path) == []
    long_ago = time.time() - atomic.STALE_AFTER_S - 60
    os.utime(other_host, (long_ago, long_ago))
    assert remove_stale_temps(path) == [other_host]  # no writer leaves its file untouched for an hour
    os.utime(unknown_host, (long_ago, long_ago))
    assert remove_stale_temps(path) == [unknown_host]


@pytest.mark.skipif(atomic.fcntl is None, reason="no advisory locks (Windows)")
def test_a_temp_file_being_written_is_kept_where_its_pid_cannot_be_seen(tmp_path):
    # a container with this host's name but a PID namespace of its own: its writer's PID is not
    # running in ours; the lock it holds on its file is seen across namespaces
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    tmp = temp_path(path, _dead_pid(), ".part")
    with open(tmp, "wb") as f:
        atomic.lock_temp(f)
        assert remove_stale_temps(path, ".part") == []
    assert remove_stale_temps(path, ".part") == [tmp]  # closed: the writer is gone


def test_only_the_targets_own_temp_files_are_considered(tmp_path):
    dead = _dead_pid()
    others = [temp_path(tmp_path / "checkpoint.pt", dead), tmp_path / ".checkpoint.pt.x.tmp",
              tmp_path / f".checkpoint.{dead}.tmp.bak"]
    for tmp in others:
        tmp.write_bytes(b"")
    assert remove_stale_temps(tmp_path / "checkpoint") == []
    target = tmp_path / "run[1].pt"  # glob characters in the name
    stale = temp_path(target, dead)
    stale.write_bytes(b"")
    assert remove_stale_temps(target) == [stale]


@pytest.mark.slow  # tracing and exporting take seconds
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_onto_a_full_disk_leaves_no_model_file(tmp_path, monkeypatch, fmt):
    from pathlib import Path

    from digits.export import export_model

    pytest.importorskip("onnx")
    _fail_after(monkeypatch, 10_000)
    with pytest.raises(DigitsError, match=f"model.{fmt}: No space left on device"):
        export_model(Path(__file__).parent / "data" / "seed.pt", fmt, tmp_path / f"model.{fmt}")
    assert list(tmp_path.iterdir()) == []
