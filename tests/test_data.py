import gzip
import os
import struct
import threading

import numpy as np
import pytest
import torch

from conftest import idx_bytes
from digits.data import FILES, load_mnist, mnist_file, normalize, read_idx, split_train_val, Split
from digits.errors import DataError


def test_read_idx_plain_and_gzip_agree(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    for name in ("a", "a.gz"):
        t = read_idx(tmp_path / name)
        assert t.dtype == torch.uint8 and t.shape == (2, 3, 4)
        assert torch.equal(t, torch.from_numpy(array))


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "i").write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + values.tobytes())
    assert read_idx(tmp_path / "i").tolist() == [1, -2, 70000]


@pytest.mark.parametrize("content, message", [
    (b"", r"not an IDX file \(it is empty\)"),
    (b"\x00\x00\x08", "not an IDX file"),
    (b"PK\x03\x04rest", "not an IDX file"),
    (b"\n<html><body>Service unavailable</body></html>", r"not an IDX file \(it is HTML"),  # an error page
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "not an IDX file"),  # unknown type code
    (b"\x00\x00\x08\x03\x00\x00", "truncated in its header"),
    (idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-5], "truncated or corrupt"),
    (idx_bytes(np.zeros((2, 28, 28), np.uint8)) + b"x", "truncated or corrupt"),
])
def test_read_idx_rejects_broken_files(tmp_path, content, message):
    path = tmp_path / "broken"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    # what to do about it, as for a truncated gzip file: these are failed or interrupted downloads
    assert str(info.value).endswith("; delete it and download it again")


def test_header_claiming_huge_size_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 4_000_000_000, 60000, 60000) + b"\0" * 10)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    path = tmp_path / "bad.gz"
    path.write_bytes(good[:20] + b"\xff" * 10 + good[30:])
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(path)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing.gz")


def test_split_is_seeded_disjoint_and_complete():
    full = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 28, 28),
                 torch.arange(100) % 10)
    train, val = split_train_val(full, 20, seed=3)
    train2, val2 = split_train_val(full, 20, seed=3)
    _, val3 = split_train_val(full, 20, seed=4)
    assert len(train) == 80 and len(val) == 20
    assert torch.equal(val.images, val2.images) and torch.equal(train.labels, train2.labels)
    assert not torch.equal(val.images, val3.images)
    ids = torch.cat([train.images[:, 0, 0, 0], val.images[:, 0, 0, 0]]).sort().values
    assert torch.equal(ids, torch.arange(100, dtype=torch.uint8))


def test_split_takes_any_integer_seed_and_keeps_the_streams_torch_took():
    full = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 28, 28),
                 torch.arange(100) % 10)

    def val_ids(seed):
        return split_train_val(full, 20, seed)[1].images[:, 0, 0, 0]

    perm = torch.randperm(100, generator=torch.Generator().manual_seed(-1))  # torch took -1 already
    assert torch.equal(val_ids(-1), perm[:20].sort().values.to(torch.uint8))
    assert torch.equal(val_ids(2**64 - 1), val_ids(-1)) and torch.equal(val_ids(2**64 + 7), val_ids(7))
    assert len(val_ids(-(10**30))) == 20  # beyond 64 bits: "Overflow when unpacking long long" before


def test_split_keeps_file_order_as_sorted_indices_would():
    # the split picks rows by a mask (fast); it must equal sorting the permutation's halves
    full = Split(torch.randint(0, 255, (500, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (500,)))
    train, val = split_train_val(full, 120, seed=7)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(7))
    assert torch.equal(val.images, full.images[perm[:120].sort().values])
    assert torch.equal(train.labels, full.labels[perm[120:].sort().values])


def test_multi_member_gzip_is_read_whole(tmp_path):
    array = (np.arange(4 * 28 * 28) % 251).astype(np.uint8).reshape(4, 28, 28)
    data = idx_bytes(array)
    (tmp_path / "m.gz").write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    assert torch.equal(read_idx(tmp_path / "m.gz"), torch.from_numpy(array))


def test_val_size_zero_keeps_everything_and_bad_sizes_fail():
    full = Split(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    train, val = split_train_val(full, 0)
    assert len(train) == 10 and len(val) == 0
    with pytest.raises(DataError, match="--val-size"):
        split_train_val(full, 10)


def test_load_mnist_from_synthetic_files(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=50)
    assert data.train.images.shape == (250, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert len(data.val) == 50 and len(data.test) == 100
    assert data.test.labels.dtype == torch.int64


@pytest.mark.parametrize("spell", [str.upper, lambda name: name.replace("-idx", ".idx"),
                                   lambda name: name.replace("-idx", ".idx").removesuffix(".gz")],
                         ids=["upper-case", "kaggle-gz", "kaggle"])
def test_upper_case_and_kaggle_names_are_read(tiny_mnist, spell):
    # TRAIN-IMAGES-IDX3-UBYTE.GZ (some archives, case-insensitive disks), train-images.idx3-ubyte (Kaggle)
    for name in FILES:
        gz = tiny_mnist / f"{name}.gz"
        target = tiny_mnist / spell(gz.name)
        if target.suffix == ".gz":
            gz.rename(target)
        else:
            target.write_bytes(gzip.decompress(gz.read_bytes()))
            gz.unlink()
    assert len(load_mnist(tiny_mnist, val_size=0).train) == 300


def test_the_exact_name_wins_over_other_spellings(tmp_path):
    for name in ("T10K-LABELS-IDX1-UBYTE.GZ", "t10k-labels.idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"")
    assert mnist_file(tmp_path, "t10k-labels-idx1-ubyte") == tmp_path / "t10k-labels-idx1-ubyte"
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    assert mnist_file(tmp_path, "t10k-labels-idx1-ubyte") == tmp_path / "t10k-labels.idx1-ubyte"
    assert mnist_file(tmp_path, "t10k-images-idx3-ubyte") is None
    assert mnist_file(tmp_path / "nowhere", "t10k-images-idx3-ubyte") is None


def test_normalize_matches_the_tutorial_transform():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    expected = (images.float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(normalize(images), expected, atol=1e-6)


@pytest.mark.slow
def test_real_mnist_known_facts(real_mnist):
    data = load_mnist(real_mnist, val_size=0)
    assert torch.bincount(data.train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(data.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    pixels = data.train.images.float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)
    split = load_mnist(real_mnist)
    assert (len(split.train), len(split.val), len(split.test)) == (55000, 5000, 10000)


def test_normalize_leaves_a_float_input_unchanged():
    pixels = torch.tensor([[0.0, 255.0]])
    out = normalize(pixels)
    assert pixels.tolist() == [[0.0, 255.0]] and out.tolist() == normalize(pixels.to(torch.uint8)).tolist()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    errors = []

    def read():
        try:
            read_idx(fifo)
        except DataError as e:
            errors.append(str(e))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # blocked in open() until a writer comes: be that writer, then fail
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        reader.join(timeout=5)
        pytest.fail("read_idx waited for a writer on a named pipe")
    assert errors == [f"{fifo}: not a regular file"]
