import pickle
import re

import numpy as np
import pytest
import torch

from conftest import ROOT
from digits.checkpoint import (DAMAGED, describe, digest, held_out_split, load_checkpoint, read_checkpoint,
                               save_checkpoint)
from digits.errors import CheckpointError, DigitsError
from digits.models import create_model


def test_checkpoint_describes_itself(tmp_path):
    model = create_model("seed")
    path = save_checkpoint(tmp_path / "c.pt", model, describe("seed", {}, {"seed": 3}), iter_num=7)
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    assert ckpt["iter_num"] == 7
    assert meta["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert meta["classes"] == [str(d) for d in range(10)] and meta["config"] == {"seed": 3}
    assert meta["torch_version"] == torch.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


class _Evil:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_loading_never_runs_code_from_the_file(tmp_path):
    evil = _Evil()
    evil.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"format": "digits-checkpoint", "meta": {}, "payload": evil}, path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"hello", pickle.dumps({"a": 1}), b"PK\x03\x04broken"])
def test_garbage_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(path)


def test_other_files_and_mismatched_weights(tmp_path):
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a digits checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    path = save_checkpoint(tmp_path / "c.pt", create_model("seed"), describe("seed", {}))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["fc.0.weight"] = torch.zeros(3, 3)
    ckpt["sha256"] = digest(ckpt)  # a consistent file, just for other weights
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="weights do not fit model 'seed'"):
        load_checkpoint(path)


class _Wide(torch.nn.Module):
    """Another architecture: same first layer name as the seed net, other shapes and layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, 3)
        self.head = torch.nn.Linear(32, 10)


def test_checkpoint_of_another_architecture(tmp_path):
    # weights of another network filed under the seed net's name
    path = save_checkpoint(tmp_path / "wide.pt", _Wide(), describe("seed", {}))
    with pytest.raises(CheckpointError, match=r"wide.pt: weights do not fit model 'seed' \(.*conv1"):
        load_checkpoint(path)
    # a model this version of digits does not have, or arguments the seed net does not take
    for name, kwargs, expected in (("resnet99", {}, "unknown model 'resnet99'"),
                                   ("seed", {"width": 3}, "bad arguments for model 'seed'")):
        path = save_checkpoint(tmp_path / "other.pt", create_model("seed"), describe(name, kwargs))
        with pytest.raises(CheckpointError, match=f"other.pt: cannot rebuild its model .*{expected}"):
            load_checkpoint(path)


@pytest.mark.parametrize("meta, model, expected", [
    ({}, {}, "does not name a model"),
    ({"model_name": 3}, {}, "does not name a model"),
    ({"model_name": "seed", "model_kwargs": [1]}, {}, "does not name a model"),
    ({"model_name": "seed"}, None, "holds no model weights"),
    ({"model_name": "seed"}, {"w": 1.0}, "holds no model weights"),
])
def test_checkpoint_with_a_broken_description(tmp_path, meta, model, expected):
    payload = {"format": "digits-checkpoint", "version": 2, "meta": meta, "model": model}
    payload["sha256"] = digest(payload)
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(tmp_path / "c.pt")


def _saved(tmp_path) -> bytes:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "good.pt", create_model("seed"), describe("seed", {}),
                           iter_num=5).read_bytes()


def test_bit_flips_are_refused_or_harmless(tmp_path):
    """Without the stored checksum, 297 of 300 random single-bit flips loaded silently (measured with
    torch 2.13): torch does not verify the zip's CRCs. Now a flip is refused, or it hit bytes that do
    not change the contents (zip padding and timestamps) and the weights load exactly."""
    data = _saved(tmp_path)
    reference = read_checkpoint(tmp_path / "good.pt")["model"]
    rng = np.random.default_rng(0)
    refused = 0
    path = tmp_path / "flipped.pt"
    for i in rng.integers(0, len(data), 120):
        flipped = bytearray(data)
        flipped[i] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            _, ckpt = load_checkpoint(path)
        except CheckpointError as e:
            assert "flipped.pt" in str(e) and "\n" not in str(e)
            refused += 1
            continue
        assert all(torch.equal(ckpt["model"][k], v) for k, v in reference.items())
    assert refused >= 110


def test_version_1_checkpoints_without_a_checksum_still_load(tmp_path):
    model = create_model("seed")
    payload = {"format": "digits-checkpoint", "version": 1, "meta": describe("seed", {}),
               "model": model.state_dict()}
    torch.save(payload, tmp_path / "v1.pt")
    loaded, _ = load_checkpoint(tmp_path / "v1.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_a_torchscript_export_or_an_image_is_refused_in_one_line(tmp_path):
    from PIL import Image

    from digits.export import export_model

    scripted = export_model(ROOT / "tests" / "data" / "seed.pt", "torchscript", tmp_path / "seed.ts")
    with pytest.raises(CheckpointError, match="a TorchScript export, not a digits checkpoint"):
        read_checkpoint(scripted)
    Image.new("RGB", (20, 20), "white").save(tmp_path / "photo.jpg")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(tmp_path / "photo.jpg")
    assert str(error.value) == f"{tmp_path / 'photo.jpg'}: not a checkpoint file (it looks like a JPEG image)"


def _with_normalization(tmp_path, normalization, version=2):
    meta = describe("seed", {})
    if normalization is None:
        del meta["normalization"]  # as a checkpoint from before digits recorded it
    else:
        meta["normalization"] = normalization
    payload = {"format": "digits-checkpoint", "version": version, "meta": meta,
               "model": create_model("seed").state_dict()}
    if version >= 2:
        payload["sha256"] = digest(payload)
    torch.save(payload, tmp_path / "other.pt")
    return tmp_path / "other.pt"


@pytest.mark.parametrize("normalization, holds", [
    ({"mean": 0.5, "std": 0.5}, "mean 0.5 and std 0.5"),
    ({"mean": 0.0, "std": 1.0}, "mean 0 and std 1"),
    ({"mean": [0.1307], "std": [0.25]}, "mean 0.1307 and std 0.25"),
    ({"mean": 0.1307}, "mean 0.1307 and std None"),
    ("imagenet", "'imagenet'"),
])
def test_a_checkpoint_normalised_otherwise_is_refused_in_one_line(tmp_path, normalization, holds):
    path = _with_normalization(tmp_path, normalization)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and holds in message and "\n" not in message
    assert "digits uses mean 0.1307 and std 0.3081" in message


@pytest.mark.parametrize("normalization", [None, {"mean": 0.1307, "std": 0.3081},
                                           {"mean": [0.13070000708], "std": (0.30809998512,)}])
def test_a_checkpoint_normalised_as_digits_does_or_recording_nothing_loads(tmp_path, normalization):
    load_checkpoint(_with_normalization(tmp_path, normalization))  # float32 rounding is the same
    load_checkpoint(_with_normalization(tmp_path, normalization, version=1))


def test_the_committed_seed_checkpoint_still_loads():
    _, ckpt = load_checkpoint(ROOT / "tests" / "data" / "seed.pt")
    assert ckpt["meta"]["normalization"] == {"mean": 0.1307, "std": 0.3081}


def _recorded(val_size=None, split_seed=None) -> dict:
    data = {} if val_size is None else {"data": {"val_size": val_size, "split_seed": split_seed}}
    return {"meta": describe("seed", {}, config=data)}


def test_held_out_split_is_the_checkpoints_own_or_given_for_those_that_record_none():
    a, b, old = ("a.pt", _recorded(3000, 4)), ("b.pt", _recorded(3000, 4)), ("old.pt", _recorded())
    assert held_out_split([a, b]) == (3000, 4)
    assert held_out_split([a, b], val_size=3000, split_seed=4) == (3000, 4)  # the recorded values, repeated
    assert held_out_split([old], val_size=200, split_seed=1) == (200, 1)
    assert held_out_split([a, old], val_size=3000, split_seed=4) == (3000, 4)


@pytest.mark.parametrize("named, given, message", [
    ([("a.pt", _recorded(3000, 4))], {"split_seed": 9},
     "a.pt: records its validation split as 3000 images, split seed 4; --split-seed 9 would choose other"),
    ([("a.pt", _recorded(3000, 4))], {"val_size": 5000, "split_seed": 4},
     "a.pt: records its validation split as 3000 images, split seed 4; --val-size 5000 would choose other"),
    ([("a.pt", _recorded(3000, 4)), ("b.pt", _recorded(3000, 5))], {"split_seed": 4},
     "b.pt: records its validation split as 3000 images, split seed 5; --split-seed 4 would choose other"),
    ([("a.pt", _recorded(0, 0))], {"val_size": 5000, "split_seed": 0}, "a.pt: trained on all 60,000 training images"),
    ([("a.pt", _recorded(0, 0))], {"split_seed": 7}, "a.pt: trained on all 60,000 training images"),
])
def test_held_out_split_refuses_values_other_than_a_checkpoint_records(named, given, message):
    """`evaluate --split val --val-size 5000` on a checkpoint trained with --val-size 0 scored it on
    5,000 of its own training images ("validation accuracy 98.72%"); so did another --split-seed."""
    with pytest.raises(DigitsError, match=re.escape(message)) as error:
        held_out_split(named, **given)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("named, given, message", [
    ([("a.pt", _recorded(3000, 4)), ("b.pt", _recorded(3000, 5))], {},
     "held out different validation splits (a.pt: 3000 images, split seed 4; b.pt: 3000 images, split seed 5)"),
    ([("a.pt", _recorded(3000, 4)), ("old.pt", _recorded())], {}, "old.pt: does not record its validation split"),
    ([("a.pt", _recorded(0, 0))], {}, "a.pt: trained on all 60,000 training images"),
    ([("a.pt", _recorded(3000, 4))], {"val_size": 0}, "--val-size must be positive"),
])
def test_held_out_split_refuses_what_would_not_be_a_fair_validation(named, given, message):
    with pytest.raises(DigitsError, match=re.escape(message)):
        held_out_split(named, **given)


def _seed_payload(version: int = 2, **changes) -> dict:
    payload = {"format": "digits-checkpoint", "version": version, "meta": describe("seed", {}),
               "model": dict(create_model("seed").state_dict())}
    payload.update(changes)
    return payload


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
@pytest.mark.parametrize("where", ["model", "extra", "meta"])
def test_a_sparse_tensor_anywhere_is_refused_in_one_line(tmp_path, where):
    payload = _seed_payload()
    sparse = torch.eye(3).to_sparse()
    if where == "model":
        payload["model"]["conv1.0.bias"] = sparse
    elif where == "extra":
        payload["extra"] = [1, {"t": sparse}]
    else:
        payload["meta"]["saliency"] = sparse.to_sparse_csr()
    payload["sha256"] = "0" * 64  # the checksum cannot be computed: the refusal must come first
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "c.pt")
    layout = "sparse_csr" if where == "meta" else "sparse_coo"
    assert str(error.value) == (f"{tmp_path / 'c.pt'}: holds data no digits checkpoint contains "
                                f"(a {layout} tensor); not a usable checkpoint")


def test_a_version_1_checkpoint_with_sparse_weights_is_refused_in_one_line(tmp_path):
    payload = _seed_payload(version=1)
    payload["model"]["conv1.0.weight"] = payload["model"]["conv1.0.weight"].to_sparse()
    torch.save(payload, tmp_path / "v1.pt")
    with pytest.raises(CheckpointError, match=r"v1.pt: its weights include a sparse_coo tensor; not a usable"):
        load_checkpoint(tmp_path / "v1.pt")


@pytest.mark.parametrize("key", [3, 2.5, None, ("conv1.0.weight",)])
def test_weights_named_by_anything_but_strings_are_refused_in_one_line(tmp_path, key):
    payload = _seed_payload()
    payload["model"][key] = torch.zeros(1)
    payload["sha256"] = digest(payload)  # a consistent file, just with such a key
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="c.pt: its weights are not all named by strings"):
        load_checkpoint(tmp_path / "c.pt")


def test_the_checksum_of_a_conjugate_view_is_that_of_its_values():
    values = torch.tensor([1 + 2j, 3 - 1j])
    assert digest({"t": values.conj()}) == digest({"t": values.conj().resolve_conj()}) != digest({"t": values})


@pytest.mark.parametrize("config", [None, 5, "data", {"data": None}, {"data": [3000, 4]}])
def test_held_out_split_of_a_checkpoint_whose_config_is_not_a_mapping(config):
    named = [("odd.pt", {"meta": {**describe("seed", {}), "config": config}})]
    with pytest.raises(DigitsError, match="odd.pt: does not record its validation split; give --val-size"):
        held_out_split(named)
    assert held_out_split(named, val_size=200, split_seed=1) == (200, 1)


@pytest.mark.parametrize("size, seed", [("3000", 4), (3000, 4.5), (True, 4), ([3000], 4)])
def test_held_out_split_recorded_as_other_than_whole_numbers_is_one_line(size, seed):
    named = [("odd.pt", {"meta": describe("seed", {}, config={"data": {"val_size": size, "split_seed": seed}})})]
    with pytest.raises(DigitsError, match="odd.pt: records its validation split as .*not two whole numbers"):
        held_out_split(named)


TRUNCATED = "not a readable digits checkpoint (damaged or truncated: not a complete checkpoint file)"


def test_every_truncation_is_a_clear_error_in_a_whole_sentence(tmp_path):
    """torch's own message was cut at 200 characters: "... there is a high likelihood that your
    checkpoint file is)"; an empty file says it is empty (test_other_files_are_named_for_what_they_are)."""
    data = _saved(tmp_path)
    path = tmp_path / "cut.pt"
    # every 1/64th of the file plus the first and last bytes (where the zip directory lives)
    for n in sorted({*range(1, 5), *range(1, len(data), len(data) // 64), *range(len(data) - 64, len(data))}):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError) as error:
            read_checkpoint(path)
        assert str(error.value) == f"{path}: {TRUNCATED}", n
    legacy = tmp_path / "legacy.pt"  # torch's format before its zip archives: a pickle stream
    torch.save({"a": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-20])
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(legacy)
    assert str(error.value) == f"{legacy}: {TRUNCATED}"


@pytest.mark.parametrize("message, shown", [
    ("Unexpected key. More text that explains nothing the user needs", "Unexpected key"),
    ("one sentence that is far too long to show whole " * 6, "RuntimeError"),
    ("line one\nline two", "line one")])
def test_a_reason_from_torch_is_shown_whole_or_not_at_all(tmp_path, monkeypatch, message, shown):
    path = tmp_path / "c.pt"
    path.write_bytes(_saved(tmp_path))

    def fail(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a readable digits checkpoint ({shown})"


def _image(tmp_path, name, fmt):
    from PIL import Image

    path = tmp_path / name
    Image.new("L", (20, 20), 255).save(path, format=fmt)
    return path


@pytest.mark.parametrize("name, fmt, kind", [
    ("photo.jpg", "JPEG", "JPEG"), ("scan.png", "PNG", "PNG"), ("a.gif", "GIF", "GIF"), ("a.bmp", "BMP", "BMP"),
    ("a.tif", "TIFF", "TIFF"), ("a.webp", "WEBP", "WebP"), ("a.pgm", "PPM", "Netpbm (PGM/PPM)"),
    ("photo.pt", "JPEG", "JPEG")])  # known by its bytes, not its name
def test_an_image_given_as_the_checkpoint_is_named_as_one_not_as_a_hostile_pickle(tmp_path, name, fmt, kind):
    path = _image(tmp_path, name, fmt)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a checkpoint file (it looks like a {kind} image)"


@pytest.mark.parametrize("content, says", [
    (b"", "it is empty"),
    (b'{"test_accuracy": 0.99}\n', "it looks like a text file"),
    (bytes(range(7, 40)), "PyTorch saves zip archives or pickles; this is neither")])
def test_other_files_are_named_for_what_they_are(tmp_path, content, says):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a checkpoint file ({says})"


def test_a_zip_archive_that_torch_did_not_write_is_not_a_checkpoint(tmp_path):
    import zipfile

    path = tmp_path / "notes.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a checkpoint file (a zip archive, but not a PyTorch checkpoint)"


def test_a_pickle_that_torch_did_not_write_is_not_refused_as_hostile(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: not a readable digits checkpoint (a pickle, but not one torch.save wrote)"


def test_a_pickle_that_would_run_code_is_still_refused_as_such(tmp_path):
    evil = _Evil()
    evil.target = str(tmp_path / "pwned")
    for protocol in (2, 4):  # torch.save's legacy format, and what pickle.dump writes by default
        path = tmp_path / f"evil{protocol}.pt"
        path.write_bytes(pickle.dumps(evil, protocol=protocol))
        with pytest.raises(CheckpointError) as error:
            read_checkpoint(path)
        assert str(error.value).startswith(f"{path}: not a readable digits checkpoint (refused: ")
        assert "\n" not in str(error.value) and not (tmp_path / "pwned").exists()


class _System:
    """What a hostile checkpoint holds: unpickling it calls os.system (posix.system, a module torch
    2.13 blocks, so its message names no "WeightsUnpickler error:")."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os
        return (os.system, (self.command,))


def hostile_checkpoint(path, proof) -> str:
    """A checkpoint that would create ``proof`` if it were unpickled without weights_only."""
    import shlex
    torch.save({"format": "digits-checkpoint", "meta": {}, "x": _System(f"touch {shlex.quote(str(proof))}")}, path)
    return str(path)


REFUSED = "not a readable digits checkpoint (refused: it holds objects other than tensors and plain data"


def test_a_checkpoint_that_would_call_a_blocked_module_is_refused_as_such(tmp_path):
    """It was refused, safely, as "not a readable digits checkpoint (Weights only load failed)"."""
    path = hostile_checkpoint(tmp_path / "evil.pt", tmp_path / "pwned")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: {REFUSED}; it asks for posix.system, which PyTorch's safe loader does not load)"
    assert not (tmp_path / "pwned").exists()
    torch.load(path, weights_only=False)  # the payload is real: loaded unsafely, it runs
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("pickled, detail", [
    (b"cposix\nsystem\n", "; it asks for posix.system, which PyTorch's safe loader does not load)"),  # blocked
    (b"cbuiltins\nexec\n", "; it asks for exec, which PyTorch's safe loader does not load)"),  # not allowed
    (b"}K\x01a", "; Can only append to lists, but got <class 'dict'>)"),  # torch's "please file an issue"
])
def test_every_refusal_of_torch_s_safe_loader_says_so(tmp_path, pickled, detail):
    """torch 2.13 words its weights_only refusals four ways, and only two say "WeightsUnpickler error:".
    The fourth (a module to import first, as for DTensors) holds only while the process has not imported
    it, which other tests do; it takes the blocked module's path."""
    path = tmp_path / "odd.pt"
    path.write_bytes(b"\x80\x02" + pickled + b".")
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: {REFUSED}{detail}"



@pytest.mark.parametrize("garbage", [b"q\x00(X\x06\x00\x00\x00ss", b"\x01\x02\x03bad", b"not a module"])
def test_a_damaged_pickle_inside_a_checkpoint_is_called_damaged_not_hostile(tmp_path, garbage):
    """A byte changed in data.pkl made the safe loader read a GLOBAL of garbage: it was reported as
    "refused: it holds objects other than tensors ...; it asks for q\x00(X\x06..., which PyTorch's safe
    loader does not load", control characters and all, as though the file asked to run code."""
    import zipfile

    ok = save_checkpoint(tmp_path / "ok.pt", create_model("seed"), describe("seed", {}))
    with zipfile.ZipFile(ok) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    pkl = next(name for name in entries if name.endswith("data.pkl"))
    entries[pkl] = entries[pkl].replace(b"collections", garbage, 1)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(bad)
    assert str(error.value) == f"{bad}: not a readable digits checkpoint ({DAMAGED})"


def test_reading_a_pickle_of_a_newer_protocol_warns_nothing(tmp_path):
    """torch warned in two lines on stderr (protocol 4 "was not the default pickle protocol"),
    above the one-line error."""
    import warnings

    path = tmp_path / "plain4.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="plain4.pt: not a readable digits checkpoint"):
            read_checkpoint(path)
    assert [str(w.message) for w in seen] == []
