"""Killed for real: SIGKILL a training run and a checkpoint write in a child process, then check
that nothing was lost. Each starts a Python that imports torch, so these cost seconds."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from digits.atomic import temp_path
from digits.checkpoint import describe, load_checkpoint, read_checkpoint, save_checkpoint
from digits.cli import main
from digits.errors import CheckpointError
from digits.models import create_model

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
# one thread: the killed child and the in-process runs must compute bit-for-bit the same steps
TRAIN = ["--epochs", "4", "--batch-size", "32", "--val-size", "50", "--seed", "3", "--threads", "1",
         "--no-progress", "--no-tensorboard"]  # 250 images: 8 steps an epoch, 32 in all


def _wait_for(condition, proc, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before it could be killed: "
                        f"{proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "child made no progress"
        time.sleep(0.005)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _in_process(args) -> int:
    threads = torch.get_num_threads()
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_ends_as_an_uninterrupted_run(tiny_mnist, tmp_path):
    killed = tmp_path / "killed"
    args = ["train", "--data-dir", str(tiny_mnist), "--out", str(killed), *TRAIN]
    proc = subprocess.Popen([sys.executable, "-m", "digits", *args, "--checkpoint-every", "5"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.pt"
    _wait_for(checkpoint.exists, proc)  # first written at step 5 of 32
    _kill(proc)
    at = read_checkpoint(checkpoint)
    assert 5 <= at["iter_num"] < 32 and at["progress"]["epoch"] < 4
    assert _in_process([*args, "--resume", str(checkpoint)]) == 0
    assert _in_process(["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "straight"),
                        *TRAIN]) == 0

    resumed, straight = (load_checkpoint(p / "checkpoint.pt")[0] for p in (killed, tmp_path / "straight"))
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (killed, tmp_path / "straight")]
    assert metrics[0]["iterations"] == metrics[1]["iterations"] == 32
    assert metrics[0]["val_accuracy_per_epoch"] == metrics[1]["val_accuracy_per_epoch"]
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]


# The child saves a checkpoint, then starts a second, larger one whose file stalls after 1 MiB of
# 4 (as a slow disk would), says so, and waits to be killed.
_WRITER = """
import sys, time
import torch
from digits import atomic
from digits.checkpoint import describe, save_checkpoint
from digits.models import create_model

class Stalling:
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, data):
        room = (1 << 20) - self.n
        if len(data) > room:
            self.f.write(bytes(data[:room]))
            self.f.flush()
            print("stalled", flush=True)
            time.sleep(300)
        self.n += self.f.write(data)
        return len(data)
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()

model = create_model("seed")
save_checkpoint(sys.argv[1], model, describe("seed", {}), iter_num=1)
atomic.open = lambda path, mode: Stalling(open(path, mode))
save_checkpoint(sys.argv[1], model, describe("seed", {}), iter_num=2, extra=torch.ones(1 << 20))
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"stalled", proc.stderr.read().decode()[-2000:]
    finally:
        _kill(proc)
    partial = temp_path(path, proc.pid)
    assert partial.stat().st_size == 1 << 20  # killed a quarter of the way through writing 4 MiB
    assert [p.name for p in tmp_path.glob("*.pt")] == ["checkpoint.pt"]
    assert read_checkpoint(path)["iter_num"] == 1  # the previous checkpoint, whole
    with pytest.raises(CheckpointError, match="not a readable digits checkpoint"):
        read_checkpoint(partial)  # and if someone points at the leftover, a clear error
    save_checkpoint(path, create_model("seed"), describe("seed", {}), iter_num=3)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the leftover is cleaned up


@pytest.mark.slow
def test_ctrl_c_mid_training_is_one_line_exit_130_and_leaves_a_resumable_folder(tiny_mnist, tmp_path):
    """What README says Ctrl-C does: `digits: interrupted`, exit 130, config.json and the last
    checkpoint kept (no metrics.json or report.md: the run has none), and --resume goes on from it."""
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(tiny_mnist), "--out", str(out), *TRAIN[2:], "--epochs", "400"]
    proc = subprocess.Popen([sys.executable, "-m", "digits", *args, "--checkpoint-every", "5"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for((out / "checkpoint.pt").exists, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130 and proc.stderr.read() == "digits: interrupted\n"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json"]
    at = read_checkpoint(out / "checkpoint.pt")["progress"]["epoch"]
    assert at < 400
    assert _in_process([*args[:-2], "--epochs", str(at + 1), "--resume", str(out / "checkpoint.pt")]) == 0
    assert (out / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_ctrl_c_after_the_success_line_exits_0_or_says_interrupted(tiny_mnist, tmp_path, delay):
    """A SIGINT just after `digits` printed its last line interrupted Python's shutdown: a
    KeyboardInterrupt traceback from threading or torch's teardown (exit 0), or, once Python had put
    back the default handler, death by SIGINT: exit 130 without a word. The work is done by then."""
    args = ["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "run"), *TRAIN[2:], "--epochs", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "digits", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("run folder:"):
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            break
    code, err = proc.wait(60), proc.stderr.read()
    # only a signal that beats the command's own return can still interrupt it, and then in one line
    assert (code, err) == (0, "") or (delay == 0.0 and (code, err) == (130, "digits: interrupted\n")), (code, err)
    assert (tmp_path / "run" / "metrics.json").exists()
