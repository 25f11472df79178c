"""Faults through the command line: a full disk, a read-only run folder, damaged checkpoints and a
diverging run each end with one line on stderr, exit code 2, and no half-written file that looks
complete. Disks are real: small tmpfs mounts and read-only bind mounts (needs root, as here)."""
import importlib
import json
import shutil
import subprocess

import pytest
import torch
from PIL import Image

from digits.checkpoint import describe, load_checkpoint, read_checkpoint, save_checkpoint
from digits.cli import main
from digits.models import create_model

FAST = ["--epochs", "1", "--batch-size", "32", "--val-size", "50", "--no-progress"]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")


@pytest.fixture
def mounted():
    """Mounts made through it are unmounted after the test, whatever happened."""
    points = []

    def mount(point, *args: str):
        point.mkdir(parents=True, exist_ok=True)
        _mount(*args, str(point))
        points.append(point)
        return point

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _every_file_is_whole(folder) -> list[str]:
    """No temporary leftovers, and each file that exists parses completely."""
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert not [n for n in names if n.endswith(".tmp")], names
    for name in names:
        path = folder / name
        if name.endswith(".png"):
            with Image.open(path) as image:
                image.load()  # raises on a truncated PNG
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".pt"):
            load_checkpoint(path)
    return names


# Measured on this machine with the tiny data set: the run folder takes about 1 MB. With 4 KiB free
# the TensorBoard log cannot start, with 100 KiB the checkpoint (350 KB) does not fit, with 400 KiB
# the first figure does not.
@pytest.mark.parametrize("size, fails_on", [
    ("4k", "TensorBoard logs"),
    pytest.param("100k", "checkpoint.pt", marks=pytest.mark.slow),  # trains first
    pytest.param("400k", "figures/samples.png", marks=pytest.mark.slow)])  # and tests
def test_a_full_disk_is_one_clear_line_and_leaves_only_whole_files(tiny_mnist, tmp_path, capsys,
                                                                   mounted, size, fails_on):
    disk = mounted(tmp_path / "disk", "-t", "tmpfs", "-o", f"size={size}", "tmpfs")
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(disk / "run"), *FAST], capsys)
    assert fails_on in err and "No space left on device" in err
    names = _every_file_is_whole(disk / "run")
    assert "config.json" in names and "report.md" not in names and "metrics.json" not in names


@pytest.mark.slow
def test_a_read_only_run_folder(tiny_mnist, tmp_path, capsys, mounted):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(tiny_mnist), "--out", str(run), "--checkpoint-every", "3",
                 *FAST]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    mounted(run, "--bind", str(run))
    _mount("-o", "remount,bind,ro", str(run))
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(run), *FAST[2:], "--epochs", "2",
                  "--resume", str(run / "checkpoint.pt")], capsys)
    # refused before it changes anything, naming the folder that exists (not "cannot create" it)
    assert err == f"digits: error: cannot write in {run} (read-only file system; choose a writable --out)"
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(run / "new"), *FAST], capsys)
    assert "cannot create output folder" in err and "Read-only file system" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert read_checkpoint(run / "checkpoint.pt")["iter_num"] == 8
    empty = mounted(tmp_path / "empty", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs")
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(empty), *FAST], capsys)
    assert err == f"digits: error: cannot write in {empty} (read-only file system; choose a writable --out)"


def test_fewshot_refuses_a_read_only_out_before_it_trains(tiny_mnist, tmp_path, capsys, mounted, monkeypatch):
    """An existing read-only OUT was found only at embedding.pt, after the whole experiment had trained
    (16-18 min in full): "cannot write .../embedding.pt: Read-only file system", everything lost."""
    import digits.fewshot.curve as curve
    import digits.fewshot.protonet as protonet

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(curve, "train_classifier", no_training)
    monkeypatch.setattr(protonet, "optimise", no_training)
    flags = ["fewshot", "--data-dir", str(tiny_mnist), "--quick", "--val-size", "50", "--shots", "1",
             "--train-shots", "1", "--eval-shots", "1", "--queries", "2", "--no-progress"]
    empty = mounted(tmp_path / "empty", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs")
    err = _error([*flags, "--out", str(empty)], capsys)
    assert err == (f"digits: error: cannot write in output folder {empty}: Read-only file system "
                   "(choose a writable --out)")
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    (rerun / "fewshot.json").write_text("{}")
    mounted(rerun, "--bind", str(rerun))
    _mount("-o", "remount,bind,ro", str(rerun))
    err = _error([*flags, "--out", str(rerun)], capsys)
    assert "cannot remove the previous experiment's" in err and "fewshot.json: Read-only file system" in err
    assert (rerun / "fewshot.json").read_text() == "{}"


def _checkpoint(tmp_path, name="c.pt", model=None, model_name="seed"):
    return save_checkpoint(tmp_path / name, model or create_model("seed"), describe(model_name, {}))


def test_evaluate_refuses_damaged_checkpoints(tiny_mnist, tmp_path, capsys):
    data = _checkpoint(tmp_path).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # inside the weights, which torch does not check itself
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    for name, expected in (("cut.pt", "cut.pt: not a readable digits checkpoint"),
                           ("flipped.pt", "flipped.pt: damaged")):
        assert expected in _error(["evaluate", str(tmp_path / name), "--data-dir", str(tiny_mnist)], capsys)


def test_evaluate_refuses_a_checkpoint_of_another_architecture(tiny_mnist, tmp_path, capsys):
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    _checkpoint(tmp_path, "linear.pt", other)
    _checkpoint(tmp_path, "future.pt", model_name="transformer9")
    err = _error(["evaluate", str(tmp_path / "linear.pt"), "--data-dir", str(tiny_mnist)], capsys)
    assert "weights do not fit model 'seed' (missing: conv1.0.weight" in err
    err = _error(["evaluate", str(tmp_path / "future.pt"), "--data-dir", str(tiny_mnist)], capsys)
    assert "cannot rebuild its model (unknown model 'transformer9'" in err


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tiny_mnist, tmp_path, capsys, monkeypatch):
    train = importlib.import_module("digits.train")  # the package exports a function of that name
    calls = []
    real_loss = train.F.cross_entropy

    def loss_that_turns_nan_at_step_5(logits, labels, **kwargs):
        calls.append(1)
        loss = real_loss(logits, labels, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(train.F, "cross_entropy", loss_that_turns_nan_at_step_5)
    out = tmp_path / "run"
    # checkpoints at steps 3 and 6; losses are read back every 10 steps, so before this guard the
    # NaN weights of step 5 were saved at step 6 over the good checkpoint of step 3
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(out), "--checkpoint-every", "3",
                  *FAST], capsys)
    assert "training diverged: loss is nan by step 6" in err and "never written to the checkpoint" in err
    model, ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["iter_num"] == 3 and all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(ckpt["progress"]["history"]["loss"])))


def test_divergence_error_starts_its_own_line_after_the_progress_bar(tiny_mnist, tmp_path, capsys):
    # 16 steps: the loss is read back, and found diverged, at step 10, while the bar is drawn
    args = ["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "run"), "--lr", "1e6",
            "--epochs", "1", "--batch-size", "16", "--val-size", "50"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "epoch 1/1" in err  # the bar was drawn ...
    last = err.split("\r")[-1]  # ... and cleared before the error: nothing precedes it on its line
    assert last.startswith("digits: error: training diverged") and last.count("\n") == 1, repr(err[-300:])


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    from digits.config import RunConfig
    from digits.errors import DigitsError
    from digits.optim import make_optimizer, make_scheduler
    from digits.resume import TrainState, save_state

    config = RunConfig()
    model = create_model("seed")
    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim, steps_per_epoch=8)
    save_state(tmp_path, model, optimizer, scheduler, config, TrainState(iter_num=4))
    with torch.no_grad():
        model.fc[2].bias[3] = float("inf")  # the step's loss was finite; its update was not
    state = TrainState(iter_num=8)
    state.history.loss = [2.3] * 8
    with pytest.raises(DigitsError, match="weights are not finite at step 8"):
        save_state(tmp_path, model, optimizer, scheduler, config, state)
    assert read_checkpoint(tmp_path / "checkpoint.pt")["iter_num"] == 4
    shutil.rmtree(tmp_path)


def test_resume_from_a_checkpoint_without_training_state(tiny_mnist, tmp_path, capsys):
    path = _checkpoint(tmp_path, "weights-only.pt")  # what a checkpoint for serving holds
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "o"), *FAST,
                  "--resume", str(path)], capsys)
    assert "weights-only.pt: it has no training state (optimizer, scheduler, iter_num, progress)" in err


def test_the_random_state_of_an_apple_gpu_is_saved_and_restored(monkeypatch):
    """Dropout on MPS draws from the MPS generator: a resumed run there began it again from the seed."""
    from digits import resume

    saved = torch.tensor([7, 8, 9], dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda *a: saved.clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state, *a: restored.append(state))
    state = resume._rng_state(torch.device("mps"))
    assert torch.equal(state["mps"], saved) and torch.equal(state["cpu"], torch.get_rng_state())
    resume._set_rng_state(state, torch.device("mps"))
    assert len(restored) == 1 and torch.equal(restored[0], saved)
    resume._set_rng_state({"cpu": torch.get_rng_state()}, torch.device("mps"))  # a CPU run's checkpoint
    assert len(restored) == 1
