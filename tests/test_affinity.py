"""Pinning torch's threads for the training commands (digits/affinity.py)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, write_mnist
from digits import affinity

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="affinity is Linux's")


@pytest.fixture
def no_torch_yet(monkeypatch):
    """pin_threads as at the start of a process; this process's environment restored afterwards
    (OpenMP variables left set would pin the torch that later tests import)."""
    saved = dict(os.environ)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored afterwards
    for name in (*affinity._VARIABLES, *affinity._LAUNCHERS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(affinity, "_original", None)
    monkeypatch.setattr(affinity, "_on_cpu", lambda device: device in ("auto", "cpu"))  # as with no GPU
    yield
    os.environ.clear()
    os.environ.update(saved)


@linux_only
def test_threads_are_pinned_one_per_core_unless_that_would_hurt(no_torch_yet, monkeypatch):
    assert not affinity.pin_threads(1) and "OMP_PROC_BIND" not in os.environ  # one thread: free to move
    assert not affinity.pin_threads(0, "cuda")  # training on a GPU
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert not affinity.pin_threads(2)  # 2 of 16 CPUs: it would take the first two, busy or not
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    for launcher in ("LOCAL_RANK", "SLURM_LOCALID"):  # several processes would share the first cores
        monkeypatch.setenv(launcher, "0")
        assert not affinity.pin_threads(0)
        monkeypatch.delenv(launcher)
    monkeypatch.setenv("OMP_PLACES", "threads")  # the user's own placement wins
    assert not affinity.pin_threads(0) and "OMP_PROC_BIND" not in os.environ
    monkeypatch.delenv("OMP_PLACES")
    assert affinity.pin_threads(2, "cpu")  # as many threads as CPUs
    assert (os.environ["OMP_PROC_BIND"], os.environ["OMP_PLACES"]) == ("close", "cores")


@linux_only
def test_too_late_once_torch_is_imported(no_torch_yet, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", object())  # OpenMP would have read its settings
    assert not affinity.pin_threads(0) and "OMP_PROC_BIND" not in os.environ


@linux_only
def test_unpin_gives_back_every_cpu(monkeypatch):
    every = os.sched_getaffinity(0)
    monkeypatch.setattr(affinity, "_original", every)
    os.sched_setaffinity(0, {min(every)})
    try:
        affinity.unpin()
        assert os.sched_getaffinity(0) == every
    finally:
        os.sched_setaffinity(0, every)


@linux_only
@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not affinity._on_cpu("auto"), reason="needs two CPUs and no GPU")
@pytest.mark.slow
def test_train_command_pins_and_models_does_not(tmp_path):
    data = write_mnist(tmp_path / "mnist")
    # entry() is the `digits` command; main() called from Python never pins the calling process
    probe = ("import os, sys; from digits.cli import entry; code = entry(); "
             "print(os.environ.get('OMP_PROC_BIND'), len(os.sched_getaffinity(0))); sys.exit(code)")
    env = {k: v for k, v in os.environ.items() if k not in (*affinity._VARIABLES, *affinity._LAUNCHERS)}
    env["PYTHONPATH"] = str(ROOT / "src")
    train = subprocess.run([sys.executable, "-c", probe, "train", "--data-dir", str(data), "--epochs", "1",
                            "--val-size", "50", "--no-progress", "--no-tensorboard", "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, env=env, timeout=120)
    # pinned: the main thread, OpenMP's first, now runs on one CPU only
    assert train.returncode == 0 and train.stdout.strip().endswith("close 1"), train.stderr
    models = subprocess.run([sys.executable, "-c", probe, "models"], capture_output=True, text=True, env=env,
                            timeout=120)
    every = len(os.sched_getaffinity(0))
    assert models.returncode == 0 and models.stdout.strip().endswith(f"None {every}")


@linux_only
@pytest.mark.slow  # two training processes
def test_pinned_and_unpinned_runs_train_the_same_weights(tmp_path):
    import torch

    data = write_mnist(tmp_path / "mnist")
    env = {k: v for k, v in os.environ.items() if k not in (*affinity._VARIABLES, *affinity._LAUNCHERS)}
    env["PYTHONPATH"] = str(ROOT / "src")
    weights = []
    for name, extra in (("pinned", {}), ("unpinned", {"OMP_PROC_BIND": "false"})):
        subprocess.run([sys.executable, "-m", "digits", "train", "--data-dir", str(data), "--epochs", "1",
                        "--val-size", "50", "--batch-size", "32", "--threads", "2", "--no-progress",
                        "--no-tensorboard", "--out", str(tmp_path / name)],
                       check=True, capture_output=True, env={**env, **extra}, timeout=120)
        weights.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
