"""The command line on a tiny synthetic MNIST: the main job's outputs and one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from digits.cli import main

FAST = ["--epochs", "1", "--batch-size", "32", "--val-size", "50", "--no-progress"]


def test_run_writes_the_whole_run_folder(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST]) == 0
    stdout = capsys.readouterr().out
    for name in ("config.json", "checkpoint.pt", "metrics.json", "report.md", "figures/samples.png",
                 "figures/training_curves.png", "figures/confusion_matrix.png", "figures/predictions.png",
                 "figures/misclassified.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"test {100 * metrics['test_accuracy']:.2f}% ({metrics['test_errors']} errors)" in stdout
    assert str(out) in stdout
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    assert sum(map(sum, metrics["confusion_matrix"])) == 100
    assert set(metrics["per_class"]) == {"precision", "recall", "f1", "support"}
    assert metrics["train_seconds"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["optim"]["batch_size"] == 32 and config["data"]["val_size"] == 50
    report = (out / "report.md").read_text()
    assert "figures/confusion_matrix.png" in report
    assert f"Test accuracy: **{100 * metrics['test_accuracy']:.2f}%**" in report
    pc = metrics["per_class"]
    assert f"| 9 | {pc['precision'][9]:.4f} | {pc['recall'][9]:.4f} | {pc['f1'][9]:.4f} | {pc['support'][9]} |" in report
    _check_tensorboard(out / "tb", metrics["iterations"])

    assert main(["evaluate", str(out / "checkpoint.pt"), "--data-dir", str(tiny_mnist), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert evaluated["confusion_matrix"] == metrics["confusion_matrix"]

    # --split val: the 50 validation images the run held out (split seed 0), its recorded values repeated
    # or not; another split would hold images it was trained on, and is refused
    from digits.data import load_mnist
    evaluate_val = ["evaluate", str(out / "checkpoint.pt"), "--data-dir", str(tiny_mnist), "--split", "val"]
    for flags in ([], ["--val-size", "50", "--split-seed", "0"]):
        assert main([*evaluate_val, "--json", *flags]) == 0
        on_val = json.loads(capsys.readouterr().out)
        labels = load_mnist(tiny_mnist, val_size=50, split_seed=0, download=False).val.labels
        assert (on_val["split"], on_val["images"]) == ("val", 50)
        assert [sum(row) for row in on_val["confusion_matrix"]] == labels.bincount(minlength=10).tolist()
        assert on_val["accuracy"] == pytest.approx(metrics["val_accuracy"])
    for flags in (["--split-seed", "3"], ["--val-size", "60"]):
        err = _error([*evaluate_val, *flags], capsys)
        assert f"records its validation split as 50 images, split seed 0; {' '.join(flags)} would" in err


def _check_tensorboard(folder, iterations: int) -> None:
    """The tutorial's curves were logged: every step's loss, and the accuracies."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    expected = {"Loss/train", "val accuracy per epoch", "test accuracy per batch"}
    if iterations >= 10:  # the training accuracy is read back every 10 steps
        expected.add("train accuracy per 10 batches")
    assert expected <= set(events.Tags()["scalars"])
    assert len(events.Scalars("Loss/train")) == iterations


def test_run_without_a_validation_split_and_bad_devices(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[:-3], "--val-size", "0",
                 "--no-progress", "--no-tensorboard"]) == 0
    assert "validation n/a" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["val_accuracy"] is None
    assert "Validation accuracy: n/a (no validation split)" in (out / "report.md").read_text()
    for flags in ([], ["--val-size", "50", "--split-seed", "0"]):  # the flags scored it on its training images
        err = _error(["evaluate", str(out / "checkpoint.pt"), "--data-dir", str(tiny_mnist), "--split", "val",
                      *flags], capsys)
        assert "trained on all 60,000 training images, so no validation images are held out" in err
    bad = ["bogus"] + ([] if __import__("torch").cuda.is_available() else ["cuda"])
    for device in bad:
        err = _error(["train", "--data-dir", str(tiny_mnist), "--device", device, *FAST], capsys)
        assert f"--device {device}" in err or f"--device {device!r}" in err


def test_train_then_resume_and_show(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["train", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST]) == 0
    assert (out / "checkpoint.pt").exists() and not (out / "report.md").exists()
    assert not (out / "figures").exists()  # train draws none
    args = ["train", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
            "--resume", str(out / "checkpoint.pt")]
    capsys.readouterr()
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 16  # the whole run's steps, and its seconds: both epochs'
    assert metrics["train_seconds"] == pytest.approx(sum(metrics["epoch_seconds"]))
    assert metrics["resumed_at_step"] == 8
    assert " s of it from step 8 on in this session" in capsys.readouterr().out
    ran = tmp_path / "r"  # run's report says whose time it gives
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(ran), *FAST, "--no-tensorboard"]) == 0
    assert json.loads((ran / "metrics.json").read_text())["resumed_at_step"] is None
    assert "resumed" not in (ran / "report.md").read_text()
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(ran), *FAST[2:], "--epochs", "2",
                 "--no-tensorboard", "--resume", str(ran / "checkpoint.pt")]) == 0
    assert ", the whole run (resumed at step 8)" in (ran / "report.md").read_text()
    assert main(["show", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_resume_refuses_another_split_seed_or_augmentation_and_leaves_no_folder(tiny_mnist, tmp_path, capsys):
    """`train --val-size 59000`, then `--val-size 58000 --split-seed 5 --resume`, trained on images then in
    validation with exit 0, and config.json recorded the new split; so did --seed 7 --rotate 10."""
    first = tmp_path / "t3"
    assert main(["train", "--data-dir", str(tiny_mnist), "--out", str(first), *FAST, "--no-tensorboard"]) == 0
    ckpt = first / "checkpoint.pt"
    for flags, message in ((["--val-size", "60", "--split-seed", "5"],
                            "--val-size 50, not 60, and --split-seed 0, not 5"),
                           (["--seed", "7", "--rotate", "10"], "--seed 0, not 7, and --rotate 0.0, not 10.0")):
        for command in ("train", "run"):
            out = tmp_path / "t4"
            err = _error([command, "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
                          *flags, "--resume", str(ckpt)], capsys)
            assert err.endswith(f"--resume {ckpt}: the run was trained with {message}; resume with its settings "
                                "(only --lr and --epochs may change)")
            assert not out.exists()


def test_resume_with_fewer_epochs_is_refused_and_the_same_finishes_a_stopped_run(tiny_mnist, tmp_path,
                                                                                          capsys):
    """`run --epochs 1 --resume` of a 2-epoch run's checkpoint exited 0 having trained nothing ("trained
    0.0 s (0 images/s)"), its config.json then saying epochs 1 beside metrics of 2 epochs."""
    out = tmp_path / "two"
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
                 "--no-tensorboard"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    before_iterations = json.loads(before["metrics.json"])["iterations"]
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], "--epochs", "1",
                  "--no-tensorboard", "--resume", str(out / "checkpoint.pt")], capsys)
    assert err.endswith("the checkpoint has completed 2 epochs, more than --epochs 1; --epochs counts the whole "
                        "run: give --epochs 2 to finish that run (its test and report), or more to extend it")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # stopped after its last checkpoint (during the test pass, say): the same --epochs finishes it
    (out / "metrics.json").unlink()
    (out / "report.md").unlink()
    assert main(["run", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], "--epochs", "2",
                 "--no-tensorboard", "--resume", str(out / "checkpoint.pt")]) == 0
    assert json.loads((out / "metrics.json").read_text())["iterations"] == before_iterations


def test_a_recipe_run_resumes_with_its_recipe_and_its_flags(tiny_mnist, tmp_path, capsys):
    """The flags build the resumed run's settings from --recipe as they built the run's: a `--recipe best`
    run resumes with `--recipe best` (its augmentation included) and whatever else it was given."""
    out, small = tmp_path / "best", ["--model-arg", "width=8", "--no-tensorboard"]
    assert main(["train", "--recipe", "best", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST, *small]) == 0
    ckpt = str(out / "checkpoint.pt")
    resume = ["--data-dir", str(tiny_mnist), "--out", str(out), *FAST[2:], *small, "--epochs", "2", "--resume", ckpt]
    bare = ["--data-dir", str(tiny_mnist), "--out", str(tmp_path / "bare"), "--resume", ckpt]  # the seed recipe's
    assert "the checkpoint is a 'bn-cnn' model, not 'seed'" in _error(["train", *bare], capsys)
    assert main(["train", "--recipe", "best", *resume]) == 0
    assert json.loads((out / "metrics.json").read_text())["iterations"] == 16
    err = _error(["train", "--recipe", "best", *resume, "--rotate", "5"], capsys)
    assert "the run was trained with --rotate 12.0, not 5.0; resume with its settings" in err
    rotated = tmp_path / "rotated"  # a recipe's setting overridden: resumed with the same override
    assert main(["train", "--recipe", "best", "--data-dir", str(tiny_mnist), "--out", str(rotated), *FAST, *small,
                 "--rotate", "5"]) == 0
    again = ["--data-dir", str(tiny_mnist), "--out", str(rotated), *FAST[2:], *small, "--epochs", "2",
             "--resume", str(rotated / "checkpoint.pt")]
    assert "--rotate 5.0, not 12.0" in _error(["train", "--recipe", "best", *again], capsys)
    assert main(["train", "--recipe", "best", *again, "--rotate", "5"]) == 0


def test_show_refuses_a_figure_format_it_cannot_write_in_one_line(tiny_mnist, tmp_path, capsys):
    err = _error(["show", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "s.bmp")], capsys)
    assert err.endswith("s.bmp: a figure cannot be written as .bmp; name it .png (or .jpg, .tif, "
                        ".webp, .pdf, .svg, .eps)")
    assert not (tmp_path / "s.bmp").exists()


def _error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_data_says_where_it_looked(tmp_path, capsys):
    err = _error(["run", "--data-dir", str(tmp_path / "none"), "--no-download", "--out", str(tmp_path / "o"),
                  *FAST], capsys)
    assert "MNIST not found" in err and str(tmp_path / "none") in err


def test_corrupt_data_file(tiny_mnist, tmp_path, capsys):
    path = tiny_mnist / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "o"), *FAST], capsys)
    assert "t10k-images-idx3-ubyte.gz" in err


def test_not_a_checkpoint(tiny_mnist, tmp_path, capsys):
    (tmp_path / "x.pt").write_text("hello")
    assert "x.pt" in _error(["evaluate", str(tmp_path / "x.pt"), "--data-dir", str(tiny_mnist)], capsys)


def test_every_command_that_reads_a_checkpoint_refuses_a_hostile_one_as_such(tiny_mnist, tmp_path, capsys):
    from test_checkpoint import REFUSED, hostile_checkpoint

    path = hostile_checkpoint(tmp_path / "evil.pt", tmp_path / "pwned")
    for command in (["evaluate", path, "--data-dir", str(tiny_mnist)], ["predict", path, str(tmp_path)],
                    ["export", path, "--out", str(tmp_path / "evil.onnx")], ["serve", path, "--port", "1"]):
        assert f"{path}: {REFUSED}" in _error(command, capsys), command
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "evil.onnx").exists()


def test_evaluating_an_onnx_export_says_it_needs_the_checkpoint(tiny_mnist, tmp_path, capsys):
    from digits.export import export_model

    onnx_model = export_model(SEED_PT, "onnx", tmp_path / "seed.onnx")
    renamed = tmp_path / "model.pt"  # known by its contents too, not only by its suffix
    renamed.write_bytes(onnx_model.read_bytes())
    for path in (onnx_model, renamed):
        err = _error(["evaluate", str(path), "--data-dir", str(tiny_mnist)], capsys)
        assert err == (f"digits: error: {path}: an ONNX model, not a digits checkpoint; this command needs a "
                       "checkpoint.pt that digits wrote (predict and serve read ONNX models)")


def test_evaluating_a_folder_says_so_and_points_at_its_checkpoint(tiny_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    err = _error(["evaluate", str(run), "--data-dir", str(tiny_mnist)], capsys)
    assert err.startswith(f"digits: error: {run}: a folder, not a checkpoint file") and "checkpoint.pt" in err
    (run / "checkpoint.pt").write_bytes(open(SEED_PT, "rb").read())
    err = _error(["evaluate", str(run), "--data-dir", str(tiny_mnist)], capsys)
    assert err.endswith(f"did you mean {run / 'checkpoint.pt'}?")


def test_unknown_model(tiny_mnist, tmp_path, capsys):
    err = _error(["run", "--model", "nope", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "o"),
                  *FAST], capsys)
    assert "unknown model 'nope'" in err


SEED_PT = os.path.join(os.path.dirname(__file__), "data", "seed.pt")  # seed weights, no training state


@pytest.mark.parametrize("flags, message", [
    (["--model", "nope"], "unknown model"), (["--model", "protonet"], "not a classifier"),
    (["--model", "fast", "--model-arg", "c1=0"], "bad arguments"), (["--ema-decay", "1"], "--ema-decay"),
    (["--data-dir", "EMPTY", "--no-download"], "MNIST not found"),
    (["--optimizer", "adma"], "unknown optimizer 'adma'; choose one of: sgd, adam, adamw"),
    (["--scheduler", "nope"], "unknown scheduler 'nope'"), (["--step-size", "0"], "--step-size must be positive"),
    (["--resume", "MISSING"], "missing.pt: no such checkpoint file"),
    (["--resume", "LENET"], "the checkpoint is a 'lenet5' model, not 'seed'"),
    (["--resume", SEED_PT], "it has no training state (optimizer, scheduler, progress)")])
def test_a_run_that_cannot_start_leaves_no_folder_behind(tiny_mnist, tmp_path, capsys, flags, message):
    from digits.checkpoint import describe, save_checkpoint
    from digits.config import RunConfig
    from digits.models import create_model

    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "lenet.pt", create_model("lenet5"), describe("lenet5", {}))
    paths = {"EMPTY": tmp_path / "empty", "MISSING": tmp_path / "missing.pt", "LENET": tmp_path / "lenet.pt"}
    flags = [str(paths.get(f, f)) for f in flags]
    data = [] if "--data-dir" in flags else ["--data-dir", str(tiny_mnist)]
    for command in ("run", "train"):
        out = tmp_path / "runs" / command
        assert message in _error([command, *data, "--out", str(out), *FAST, *flags], capsys)
        assert not out.exists()
    kept = tmp_path / "kept"  # a run folder that was there before is left as it was
    kept.mkdir()
    (kept / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    (kept / "mine.txt").write_text("mine")
    assert message in _error(["run", *data, "--out", str(kept), *FAST, *flags], capsys)
    assert {p.name: p.read_text() for p in kept.iterdir()} == {
        "config.json": json.dumps(RunConfig().to_dict()), "mine.txt": "mine"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see the file-in-the-way case")
def test_read_only_output_folder(tiny_mnist, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(locked / "o"), *FAST], capsys)
    assert "cannot create output folder" in err


def test_output_folder_that_cannot_be_created(tiny_mnist, tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    err = _error(["run", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "file" / "o"), *FAST], capsys)
    assert f"cannot create output folder {tmp_path / 'file' / 'o'}: {tmp_path / 'file'} is a file, not a folder" in err


def test_bad_numbers_are_rejected(tiny_mnist, capsys):
    assert "--epochs must be positive" in _error(["run", "--data-dir", str(tiny_mnist), "--epochs", "0"], capsys)


@pytest.mark.parametrize("flags, message", [
    (["--model", "seed-bn", "--model-arg", "dropout=2"], "bad arguments for model 'seed-bn'"),
    (["--model", "fast", "--model-arg", "c1=0"], "bad arguments for model 'fast'"),
    (["--threads", "-1"], "--threads must not be negative, got -1"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must not be negative, got -1"),
    (["--optimizer", "adam", "--beta1", "1.5"], "--beta1 must be in [0, 1), got 1.5"),
    (["--momentum", "-1"], "--momentum and --weight-decay must not be negative"),
    (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    # NaN passed every range check (value <= 0, min(...) < 0): tracebacks, "training diverged", or no clipping
    (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number, got nan"),
    (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number, got inf"),
    (["--clip-grad-norm", "nan"], "--clip-grad-norm must be a finite number, got nan"),
    (["--gamma=-inf"], "--gamma must be a finite number, got -inf"),
    (["--rotate", "nan"], "--rotate must be a finite number, got nan"),
    (["--lr", "nan"], "--lr must be positive and finite, got nan"),
    (["--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["--elastic", "2", "--elastic-sigma", "10"], "--elastic-sigma must be at least 0.01 and less than 28/3"),
])
def test_out_of_range_settings_are_one_line_errors(tiny_mnist, tmp_path, capsys, flags, message):
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "o"), *FAST, *flags], capsys)
    assert message in err
    assert not (tmp_path / "o").exists()  # refused before the run folder is made


def test_an_os_error_without_tensorboard_is_not_blamed_on_tensorboard(tiny_mnist, tmp_path, capsys, monkeypatch):
    import errno

    import digits.pipeline

    def fails(*args, **kwargs):  # e.g. the progress bar writing to a stderr that is gone
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(digits.pipeline, "fit", fails)
    err = _error(["train", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "o"), *FAST, "--no-tensorboard"],
                 capsys)
    assert err == "digits: error: Input/output error"  # was: "cannot write TensorBoard logs ... --no-tensorboard"


def test_evaluate_and_show_check_their_numbers(tiny_mnist, tmp_path, capsys):
    assert "--batch-size must be positive" in _error(
        ["evaluate", SEED_PT, "--data-dir", str(tiny_mnist), "--batch-size", "0"], capsys)
    for start in ("100", "-5"):  # the tiny test split has 100 images
        err = _error(["show", "--data-dir", str(tiny_mnist), "--split", "test", "--start", start,
                      "--out", str(tmp_path / "s.png")], capsys)
        assert "--start must be in [0, 100)" in err
    capsys.readouterr()
    for start, says in ((0, "test images 0 to 59\n"), (95, "test images 95 to 99 (the last 5 of the file)\n")):
        assert main(["show", "--data-dir", str(tiny_mnist), "--split", "test", "--start", str(start),
                     "--out", str(tmp_path / "s.png")]) == 0
        assert capsys.readouterr().out.endswith(f"s.png: {says}")


def test_show_offers_no_split_flags_and_evaluate_says_where_its_split_comes_from(tiny_mnist, tmp_path, capsys):
    for flag in ("--val-size", "--split-seed"):  # show draws from the whole files: the flags did nothing
        with pytest.raises(SystemExit) as exit_:
            main(["show", "--data-dir", str(tiny_mnist), flag, "7", "--out", str(tmp_path / "s.png")])
        assert exit_.value.code == 2 and f"unrecognized arguments: {flag} 7" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    shown = " ".join(capsys.readouterr().out.split()).split(" data: ", 1)[1]  # the flags, past the usage
    assert "recipe" not in shown  # evaluate has no recipe: with --split val the checkpoints' values count
    for flag, after in (("--val-size N", "--split-seed N"), ("--split-seed N", "--download,")):
        text = shown.split(flag, 1)[1].split(after, 1)[0]
        assert "with --split val" in text and "each checkpoint recorded" in text and "unused with --split test" in text


def test_model_arg_overrides_one_of_the_recipes_model_arguments():
    from digits.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse(["run", "--recipe", "fast", "--model-arg", "hidden=128"])).model.kwargs == {
        "c1": 8, "c2": 24, "hidden": 128}
    assert config_from_args(parse(["run", "--recipe", "fast", "--model", "seed-bn", "--model-arg",
                                   "dropout=0.1"])).model.kwargs == {"dropout": 0.1}


@pytest.mark.slow
def test_a_bad_model_argument_is_one_line_on_stderr(tiny_mnist, tmp_path):
    """`--model-arg c1=0` printed torch's 2-line UserWarning above the error; `c1=abc` said only "not all
    arguments converted during string formatting". The real command: warnings go to its stderr."""
    for value, shown in (("0", "0"), ("abc", "'abc'")):
        done = subprocess.run([sys.executable, "-m", "digits", "run", "--data-dir", str(tiny_mnist), "--out",
                               str(tmp_path / "o"), "--model", "fast", "--model-arg", f"c1={value}"],
                              capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr == (f"digits: error: bad arguments for model 'fast': c1 must "
                                                        f"be a whole number of at least 1, got {shown}\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_python_dash_m_and_console_script(tmp_path):
    done = subprocess.run([sys.executable, "-m", "digits", "models"], capture_output=True, text=True)
    assert done.returncode == 0 and "seed" in done.stdout and "42,940" in done.stdout


def test_output_piped_into_a_closed_reader_is_not_a_traceback(tmp_path):
    script = tmp_path / "many_lines.py"  # `digits models` made to print far more than a pipe holds
    script.write_text("import sys\nimport digits.cli as cli\nfrom digits.cli import training\n"
                      "training.cmd_models = lambda args: [print('x' * 99) for _ in range(100_000)] and 0\n"
                      "sys.exit(cli.main(['models']))\n")
    done = subprocess.run(f"{sys.executable} {script} | head -c 1", shell=True, capture_output=True, text=True)
    assert done.stderr == "", done.stderr


def test_every_command_prints_its_help(capsys):
    from digits.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"run", "train", "evaluate", "predict", "serve", "export", "compare"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name
        assert "usage: digits " + name in capsys.readouterr().out


def test_the_command_hides_its_objects_from_the_garbage_collector_before_exit(monkeypatch):
    import gc

    from digits import cli

    seen = []
    monkeypatch.setattr(cli, "main", lambda pin: seen.append(gc.get_freeze_count()) or 3)
    gc.unfreeze()
    try:
        assert cli.entry() == 3
        assert seen == [0] and gc.get_freeze_count() > 1000  # frozen after the command ran
    finally:
        gc.unfreeze()


def test_the_figures_show_the_images_the_readme_names(tiny_mnist, tmp_path, monkeypatch):
    """60 training images in the first epoch's order; the first 16 of the last test batch."""
    import torch

    from digits import pipeline, plots
    from digits.data import load_mnist
    from digits.evaluate import evaluate
    from digits.recipes import recipe
    from digits.train import epoch_permutation, fit

    config = recipe("seed")
    config.optim.epochs, config.optim.batch_size, config.test_batch_size, config.progress = 1, 32, 32, False
    data = load_mnist(tiny_mnist, val_size=50)
    trained = fit(config, data)
    test = evaluate(trained.model, data.test.images, data.test.labels, config.test_batch_size)
    seen = {}
    monkeypatch.setattr(plots, "plot_samples", lambda images, path: seen.update(samples=images))
    monkeypatch.setattr(plots, "plot_training_curves", lambda history, path: None)
    monkeypatch.setattr(plots, "plot_predictions", lambda images, predictions, labels, path: seen.update(
        predictions=images))
    monkeypatch.setattr(plots, "plot_confusion_matrix", lambda *args: None)  # these two run in the
    monkeypatch.setattr(plots, "plot_misclassified", lambda *args: None)     # child: not seen here
    (tmp_path / "figures").mkdir()
    pipeline.draw_figures(tmp_path, config, data, trained, test)
    order = epoch_permutation(len(data.train), config.seed, 0)
    assert torch.equal(seen["samples"], data.train.images[order[:60]])
    assert torch.equal(seen["predictions"], data.test.images[96:100])  # of 100 test images, batches of 32


def test_the_misclassified_figure_shows_only_the_mistakes(tmp_path, monkeypatch):
    import torch

    from digits import plots

    shown = []
    monkeypatch.setattr(plots, "plot_predictions", lambda images, predictions, labels, path, title: shown.append(
        (predictions.tolist(), labels.tolist(), title)))
    plots.plot_misclassified(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([1, 2, 3, 4]),
                             torch.tensor([1, 0, 3, 0]), tmp_path / "m.png")
    assert shown == [([2, 4], [0, 0], "Misclassified: 2 of 4, predicted (true)")]


def _usage_error(argv, capsys) -> str:
    """The one line that a mistyped command line prints; argparse's exit code 2 kept."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.out == "", argv
    assert captured.err.startswith("digits: error: ") and captured.err.count("\n") == 1, captured.err
    assert "usage:" not in captured.err
    return captured.err.strip()


@pytest.mark.parametrize("argv, says", [
    (["run", "--model-arg", "foo"], "argument --model-arg: expected KEY=VALUE, got 'foo'; see `digits run --help`"),
    (["compare", "--models", "seed", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["evaluate", "x.pt", "--split", "nope"], "argument --split: invalid choice: 'nope'"),
    (["predict", "model.onnx"], "the following arguments are required: PATH; see `digits predict --help`"),
    (["export", "x.pt"], "the following arguments are required: --out"),
    (["fewshot-predict", "e.pt", "--query", "a.png"], "required: --support; see `digits fewshot-predict --help`"),
    (["nosuch"], "argument COMMAND: invalid choice: 'nosuch'"),
    ([], "the following arguments are required: COMMAND; see `digits --help`"),
    # found unrecognised by the top parser, but named for the command they were given to
    (["show", "--val-size", "7"], "unrecognized arguments: --val-size 7; see `digits show --help`"),
    (["models", "--verbose"], "unrecognized arguments: --verbose; see `digits models --help`")])
def test_a_mistyped_command_line_is_one_line_without_the_usage_block(argv, says, capsys):
    assert says in _usage_error(argv, capsys)


def test_every_command_refuses_an_unknown_flag_in_one_line_naming_its_help(capsys):
    from digits.cli import build_parser

    for name in build_parser()._subparsers._group_actions[0].choices:
        err = _usage_error([name, "--no-such-flag"], capsys)
        assert err.endswith(f"; see `digits {name} --help`"), err


def test_a_command_whose_dependency_cannot_be_imported_says_what_to_install(tmp_path):
    # evaluate, export, train and models ended in a ModuleNotFoundError traceback without torch
    model = ROOT / "tests" / "data" / "seed.pt"
    commands = [["evaluate", str(model)], ["export", str(model), "--out", str(tmp_path / "m.onnx")],
                ["train", "--epochs", "1"], ["models"]]
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from digits.cli import main\n"
            f"print([main(args) for args in {commands!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.stdout == "[2, 2, 2, 2]\n", done.stderr
    assert done.stderr == "".join(f"digits: error: digits {args[0]} needs torch, which cannot be imported here "
                                  "(pip install torch)\n" for args in commands)

