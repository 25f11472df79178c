"""Shared fixtures: a tiny synthetic MNIST in IDX format, and the real files in ../shared/data."""
from __future__ import annotations

import gzip
import importlib.util
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("DIGITS_TEST_DATA", ROOT.parent / "shared" / "data" / "mnist"))


def benchmark_script(name: str):
    """A script of benchmarks/ imported as a module (its main() not run), for testing its parts."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def folder_is_locked(folder) -> bool:
    """Whether a process (this one included) holds ``folder`` as a run's (runfolder.lock_out): a flock
    from a descriptor of its own fails."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (drops the flock it took, if it took one)
    return False

def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in IDX format (the reference encoder the tests trust)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright 6x6 square at one of 10 places, plus noise: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        r, c = 4 + 12 * (label // 5), 2 + 5 * (label % 5)
        images[i, r:r + 6, c:c + 6] = 255
    return images, labels


def random_images(n: int = 16, seed: int = 0, blank: bool = True):
    """Normalised-looking random images (N, 1, 28, 28); with ``blank``, their top 8 rows are MNIST's
    blank background, equal values, so that max-pool windows there tie."""
    import torch

    images = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    if blank:
        images[:, :, :8] = -0.4242
    return images


def write_mnist(folder: Path, n_train: int = 300, n_test: int = 100, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": synthetic_digits(n_train, 0), "t10k": synthetic_digits(n_test, 1)}
    for prefix, (images, labels) in parts.items():
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


@pytest.fixture
def tiny_mnist(tmp_path) -> Path:
    return write_mnist(tmp_path / "mnist")


def pytest_configure(config):
    """The tests that press Ctrl-C on a digits process need its SIGINT handled: a shell that starts
    pytest in the background (`make test &` in a script) starts it with SIGINT ignored, every child
    inherits that, and Python then leaves it ignored (those tests failed there, and only there)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _kernels_built(tmp_path_factory):
    """digits/convpool.py's kernels built once per test session, in a folder of its own: otherwise
    the first test that runs the seed network would build them into its own cache folder (a test
    that checks what a folder holds would find it), and every test process keeps what it loaded."""
    from digits import convpool

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("kernels"))
    try:
        convpool.library()
    finally:
        if saved is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reads the user's cache or environment by accident."""
    monkeypatch.delenv("DIGITS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def real_mnist() -> Path:
    if not (REAL_DATA / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"real MNIST not found at {REAL_DATA}")
        pytest.skip(f"real MNIST not found at {REAL_DATA}")
    return REAL_DATA
