"""The run folder as pipeline.run writes it: what --out may be, refusals that leave it as it was,
reruns into the same --out, one run at a time."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import folder_is_locked, write_mnist

from digits import pipeline, runfolder
from digits.checkpoint import describe, save_checkpoint
from digits.cli import main
from digits.config import DataConfig, OptimConfig, RunConfig
from digits.errors import DigitsError
from digits.models import create_model

FAST = ["--epochs", "1", "--batch-size", "32", "--val-size", "50", "--no-progress", "--threads", "1"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_a_rerun_removes_the_previous_results_before_it_trains(tiny_mnist, tmp_path, monkeypatch):
    # a rerun that failed left the previous run's metrics.json and report.md beside its new config.json
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"seed": 5}')
    (out / "metrics.json").write_text('{"test_accuracy": 0.5}')
    (out / "report.md").write_text("# the previous run")
    seen = []

    def diverge(config, data, folder, resume, writer):
        seen.append(sorted(p.name for p in folder.iterdir()))
        raise DigitsError("training diverged")

    monkeypatch.setattr(pipeline, "fit", diverge)
    config = RunConfig(data=DataConfig(data_dir=str(tiny_mnist), val_size=50, download=False),
                       optim=OptimConfig(epochs=1), seed=3, tensorboard=False)
    with pytest.raises(DigitsError, match="diverged"):
        pipeline.run(config, out)
    assert seen == [["config.json", "figures"]]  # what the run started from
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "figures"]
    assert json.loads((out / "config.json").read_text())["seed"] == 3


def _tree(folder: Path) -> dict:
    """Every file's bytes and every folder under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("data") / "mnist")


@pytest.fixture(scope="module")
def finished(mnist, tmp_path_factory) -> Path:
    """A whole `digits run` folder (config, checkpoint, metrics, report, figures, TensorBoard)."""
    out = tmp_path_factory.mktemp("finished") / "r1"
    assert main(["run", "--data-dir", str(mnist), "--out", str(out), *FAST]) == 0
    assert {"metrics.json", "report.md", "checkpoint.pt", "tb", "figures/samples.png"} <= set(_tree(out))
    return out


@pytest.mark.parametrize("flags, message", [
    (["--data-dir", "EMPTY", "--no-download", "--seed", "9"], "MNIST not found"),
    (["--data-dir", "CUT"], "t10k-images-idx3-ubyte.gz"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--optimizer", "adma"], "unknown optimizer 'adma'"),
    (["--resume", "MISSING"], "missing.pt: no such checkpoint file"),
    (["--resume", "LENET"], "the checkpoint is a 'lenet5' model, not 'seed'")])
def test_a_refused_run_leaves_a_previous_run_folder_as_it_was(mnist, finished, tmp_path, capsys, flags, message):
    # `digits run --data-dir EMPTY --no-download --seed 9 --out r1` said "MNIST not found", exit 2, but had
    # removed r1's metrics.json and report.md and written seed 9 into config.json beside the old checkpoint
    (tmp_path / "empty").mkdir()
    cut = shutil.copytree(mnist, tmp_path / "cut")
    (cut / "t10k-images-idx3-ubyte.gz").write_bytes((mnist / "t10k-images-idx3-ubyte.gz").read_bytes()[:200])
    save_checkpoint(tmp_path / "lenet.pt", create_model("lenet5"), describe("lenet5", {}))
    paths = {"EMPTY": tmp_path / "empty", "CUT": cut, "MISSING": tmp_path / "missing.pt", "LENET": tmp_path / "lenet.pt"}
    flags = [str(paths.get(f, f)) for f in flags]
    data = [] if "--data-dir" in flags else ["--data-dir", str(mnist)]
    before = _tree(finished)
    for command in ("run", "train"):
        out = shutil.copytree(finished, tmp_path / command)
        assert message in _error([command, *data, "--out", str(out), *FAST, *flags], capsys)
        assert _tree(out) == before


def test_an_out_that_is_not_a_run_folder_is_refused_before_any_work(mnist, tmp_path, capsys, monkeypatch):
    # `digits train --out mine` removed the user's report.md and replaced their metrics.json,
    # config.json and checkpoint.pt, exit 0
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in (("report.md", "# my notes"), ("metrics.json", '{"a": 1}'), ("config.json", '{"b": 2}'),
                       ("checkpoint.pt", "my weights")):
        (mine / name).write_text(text)
    before = _tree(mine)

    def no_data(config):
        raise AssertionError("the data was read before OUT was refused")

    monkeypatch.setattr(pipeline, "_load", no_data)
    for command in ("run", "train"):
        err = _error([command, "--data-dir", str(mnist), "--out", str(mine), *FAST], capsys)
        assert err == (f"digits: error: --out {mine} is not a digits run folder (its config.json is not one "
                       "a run wrote); a run would replace or remove files in it: give a new or empty folder, "
                       "or a previous run's")
        assert _tree(mine) == before
    (mine / "config.json").unlink()
    err = _error(["train", "--data-dir", str(mnist), "--out", str(mine), *FAST], capsys)
    assert "(it holds checkpoint.pt, metrics.json, report.md and no config.json)" in err
    assert _tree(mine) == {k: v for k, v in before.items() if k != "config.json"}


def test_what_a_run_folder_is(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    assert runfolder.is_run_folder(folder)  # empty
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # a folder made or opened in a file manager
    assert runfolder.is_run_folder(folder)
    (folder / "figures").mkdir()  # what a run that failed before its config.json leaves
    (folder / "figures" / "Thumbs.db").write_text("x")
    (folder / ".config.json.123.tmp").write_text("{")
    assert runfolder.is_run_folder(folder)
    (folder / "figures" / "mine.png").write_text("x")  # no longer a leftover: the user's
    assert not runfolder.is_run_folder(folder)
    (folder / ".hidden-notes").write_text("mine")  # another hidden file is the user's too
    shutil.rmtree(folder / "figures")
    assert not runfolder.is_run_folder(folder)
    (folder / ".hidden-notes").unlink()
    for text, expected in ((json.dumps(RunConfig().to_dict()), True), ('{"seed": 5}', True),
                           ('{"seed": 0, "optim": {"epochs": 9}}', True),  # (older versions wrote fewer keys)
                           ('{"seed": 0, "optim": 3}', False), ('{"seed": 0, "name": "x"}', False),
                           ('{"optim": {}}', False), ("[]", False), ("{", False), ("", False)):
        (folder / "config.json").write_text(text)
        assert runfolder.is_run_folder(folder) is expected, text
    (folder / "config.json").write_bytes(b"\xff\xfe")
    assert not runfolder.is_run_folder(folder)


def test_a_run_folder_may_hold_other_files_and_a_failed_runs_leftovers(mnist, tmp_path):
    out = tmp_path / "left"
    (out / "figures").mkdir(parents=True)
    assert main(["train", "--data-dir", str(mnist), "--out", str(out), *FAST]) == 0
    (out / "notes.txt").write_text("mine")  # beside a run's own files: kept by a rerun
    assert main(["train", "--data-dir", str(mnist), "--out", str(out), *FAST]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data-dir", str(mnist), "--out", str(empty), *FAST, "--no-tensorboard"]) == 0
    # nothing but what a run writes: no lock file is left behind
    assert sorted(_tree(empty)) == ["checkpoint.pt", "config.json", "metrics.json"]


def test_a_fresh_rerun_removes_the_previous_runs_logs_figures_and_checkpoint(mnist, finished, tmp_path, monkeypatch):
    # a rerun kept the old tb/ event files: TensorBoard drew two values per step
    out = shutil.copytree(finished, tmp_path / "again")
    old_logs = sorted(p.name for p in (out / "tb").iterdir())
    assert main(["run", "--data-dir", str(mnist), "--out", str(out), *FAST, "--seed", "4"]) == 0
    logs = sorted(p.name for p in (out / "tb").iterdir())
    assert len(logs) == 1 and not set(logs) & set(old_logs)
    # `train` draws no figures: the previous run's, of another model, go with its other results
    assert main(["train", "--data-dir", str(mnist), "--out", str(out), *FAST, "--no-tensorboard"]) == 0
    assert sorted(_tree(out)) == ["checkpoint.pt", "config.json", "metrics.json"]
    # a fresh run that fails leaves its config.json alone: no checkpoint it did not write
    again = shutil.copytree(finished, tmp_path / "fails")
    monkeypatch.setattr(pipeline, "fit", lambda *a: (_ for _ in ()).throw(DigitsError("training diverged")))
    with pytest.raises(DigitsError, match="diverged"):
        pipeline.run(RunConfig(data=DataConfig(data_dir=str(mnist), val_size=50), optim=OptimConfig(epochs=1),
                               seed=3, threads=1, progress=False), again)
    assert sorted(p for p in _tree(again) if not p.startswith("tb/")) == ["config.json", "figures", "tb"]
    assert not set((again / "tb").iterdir()) & {again / "tb" / name for name in old_logs}  # its own log only


def test_resume_keeps_the_runs_logs_and_figures(mnist, finished, tmp_path):
    out = shutil.copytree(finished, tmp_path / "resumed")
    before = _tree(out)
    assert main(["run", "--data-dir", str(mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
                 "--resume", str(out / "checkpoint.pt")]) == 0
    after = _tree(out)
    assert set(p for p in before if p.startswith("tb/")) < set(p for p in after if p.startswith("tb/"))
    assert json.loads(after["metrics.json"])["iterations"] == 2 * json.loads(before["metrics.json"])["iterations"]


def test_resume_from_another_folders_checkpoint_starts_out_afresh(mnist, finished, tmp_path):
    # `--resume runs/a/checkpoint.pt --out runs/b` kept b's checkpoint, figures and TensorBoard logs:
    # run a went on in run b's logs, its curves drawn over b's
    a, b = shutil.copytree(finished, tmp_path / "a"), shutil.copytree(finished, tmp_path / "b")
    before, old_logs = _tree(a), set(_tree(b / "tb"))
    flags = ["--data-dir", str(mnist), *FAST[2:], "--out", str(b)]
    assert main(["train", *flags, "--epochs", "2", "--resume", str(a / "checkpoint.pt")]) == 0
    logs = set(_tree(b / "tb"))
    assert len(logs) == 1 and not logs & old_logs  # its own log alone
    assert sorted(p for p in _tree(b) if not p.startswith("tb/")) == ["checkpoint.pt", "config.json", "metrics.json",
                                                                     "tb"]  # b's figures went too (train draws none)
    assert _tree(a) == before
    # b's own checkpoint, by another name for the same file: b goes on, its logs kept
    assert main(["train", *flags, "--epochs", "3", "--resume", str(a / ".." / "b" / "checkpoint.pt")]) == 0
    assert logs < set(_tree(b / "tb"))


# A `digits train` whose training waits: it holds its run folder, as a long run does.
_HOLDER = """
import sys, time
from digits import pipeline
from digits.cli import main

def fit(*args):
    print("training", flush=True)
    time.sleep(300)

pipeline.fit = fit
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_second_run_into_a_folder_another_run_is_writing_is_refused(mnist, finished, tmp_path, capsys):
    # two runs into one --out at once both exited 0, leaving config.json of one beside the other's results
    out = shutil.copytree(finished, tmp_path / "busy")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, "train", "--data-dir", str(mnist), "--out", str(out),
                             *FAST, "--no-tensorboard"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"training", proc.stderr.read().decode()[-2000:]
        before = _tree(out)
        for command in ("run", "train"):
            err = _error([command, "--data-dir", str(mnist), "--out", str(out), *FAST, "--seed", "7"], capsys)
            assert err == (f"digits: error: another digits run is writing in {out}; wait for it to end "
                           "(or stop it), or choose another --out")
            assert _tree(out) == before
        err = _error(["run", "--data-dir", str(mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
                      "--resume", str(finished / "checkpoint.pt")], capsys)
        assert "another digits run is writing in" in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # the killed run's lock went with it: its folder is free (a resume, a rerun)
    assert main(["train", "--data-dir", str(mnist), "--out", str(out), *FAST]) == 0



@pytest.mark.skipif(runfolder.fcntl is None, reason="no flock (Windows)")
def test_compare_and_run_release_their_folders_when_they_end(mnist, tmp_path, capsys):
    # compare held every run's folder until the process exited (a notebook's compare kept them from
    # every other process, one open descriptor each)
    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed", "--seeds", "0", "--data-dir", str(mnist), "--out", str(out), *FAST]
    assert main(args) == 0
    assert not folder_is_locked(out) and not folder_is_locked(out / "seed-seed0")
    assert main(args) == 0  # a rerun into it
    assert main(["train", "--data-dir", str(mnist), "--out", str(out / "seed-seed0"), *FAST]) == 0
    assert not folder_is_locked(out) and not folder_is_locked(out / "seed-seed0")
    capsys.readouterr()


def test_an_existing_out_it_cannot_write_in_is_named_as_such(mnist, finished, tmp_path, capsys, monkeypatch):
    # a read-only existing --out said "cannot create output folder X" although X existed
    out = shutil.copytree(finished, tmp_path / "ro")
    before = _tree(out)
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == out else real(path, mode, **kw))
    err = _error(["run", "--data-dir", str(mnist), "--out", str(out), *FAST], capsys)
    assert err == (f"digits: error: cannot write in {out} (read-only to this user: permission denied; "
                   "choose a writable --out)")
    assert _tree(out) == before
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == tmp_path else real(path, mode, **kw))
    err = _error(["run", "--data-dir", str(mnist), "--out", str(tmp_path / "new"), *FAST], capsys)
    assert err == f"digits: error: cannot create output folder {tmp_path / 'new'}: Permission denied"
