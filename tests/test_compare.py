"""`digits compare`, recipes and the evaluate command's ensemble and TTA options, on tiny data."""
import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import folder_is_locked

from digits.cli import config_from_args, build_parser, main
from digits.compare import COLUMNS, config_for, render_markdown, summarise
from digits.recipes import list_recipes, recipe

FAST = ["--epochs", "1", "--batch-size", "64", "--val-size", "50", "--no-progress"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_compare_writes_csv_markdown_and_chart(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed,lenet5", "--seeds", "0,1", "--recipe", "short",
            "--data-dir", str(tiny_mnist), "--out", str(out), *FAST]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["model"], r["seed"]) for r in rows] == [("seed", "0"), ("seed", "1"), ("lenet5", "0"),
                                                       ("lenet5", "1")]
    assert rows[0]["parameters"] == "42940" and all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    table = (out / "results.md").read_text()
    mean = statistics.fmean(float(r["test_accuracy"]) for r in rows[2:])
    std = statistics.stdev(float(r["test_accuracy"]) for r in rows[2:])
    assert "| lenet5 | 61,706 | 1 |" in table and f"{mean:.4f} +- {std:.4f}" in table
    assert (out / "comparison.png").stat().st_size > 0
    assert (out / "lenet5-seed1" / "checkpoint.pt").exists()

    # the checkpoints it kept: an ensemble of two, with test-time augmentation
    ckpts = [str(out / f"seed-seed{s}" / "checkpoint.pt") for s in (0, 1)]
    capsys.readouterr()
    assert main(["evaluate", *ckpts, "--tta", "--data-dir", str(tiny_mnist)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble" in printed and "shifted views" in printed
    assert main(["evaluate", *ckpts, "--json", "--data-dir", str(tiny_mnist)]) == 0
    assert sum(map(sum, json.loads(capsys.readouterr().out)["confusion_matrix"])) == 100


def test_a_run_without_validation_split_records_its_val_accuracy_as_null(tiny_mnist, tmp_path, capsys):
    # it was NaN, which is not JSON (JSON.parse and jq refuse the file); `digits run` writes null there too
    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed", "--seeds", "0", "--data-dir", str(tiny_mnist), "--out", str(out),
            *FAST, "--val-size", "0"]
    assert main(args) == 0
    text = (out / "seed-seed0" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert metrics["val_accuracy"] is None and 0 <= metrics["test_accuracy"] <= 1
    row = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| seed |")][0]
    assert row.split(" | ")[3] == "n/a" and "nan" not in row  # the table said "nan +- nan"
    assert "seed seed 0: validation n/a, test " in capsys.readouterr().out  # the progress line said "nan"


@pytest.mark.parametrize("seeds", ["0,1", "0,1,2"])
def test_a_comparison_without_validation_split_summarises_over_several_seeds(tiny_mnist, tmp_path, capsys, seeds):
    # with two seeds or more, statistics.stdev of the NaNs died in a 20-line traceback after every run
    # had trained: no results.md, no comparison.png, exit 1
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "seed", "--seeds", seeds, "--data-dir", str(tiny_mnist), "--out", str(out),
                 *FAST, "--val-size", "0"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == len(seeds.split(",")) and all(r["val_accuracy"] == "" for r in rows)  # no "nan"
    assert "nan" not in (out / "results.csv").read_text()
    tests = [float(r["test_accuracy"]) for r in rows]
    row = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| seed |")][0]
    cells = row.split(" | ")
    assert cells[3] == "n/a" and cells[4] == f"{statistics.fmean(tests):.4f} +- {statistics.stdev(tests):.4f}"
    assert "nan" not in row
    assert (out / "comparison.png").stat().st_size > 0


@pytest.mark.parametrize("missing", [None, float("nan"), ""])
def test_summaries_skip_missing_values_and_say_n_a_when_there_are_none(missing):
    def rows(*vals):
        return [{"model": "m", "seed": s, "val_accuracy": v, "test_accuracy": 0.9 + s / 100, "parameters": 7,
                 "epochs": 1, "train_seconds": 1.0, "images_per_second": 10.0} for s, v in enumerate(vals)]

    for n in (1, 2, 3):
        (s,) = summarise(rows(*[missing] * n))
        assert s["val_accuracy"] != s["val_accuracy"] and s["runs"] == n  # NaN: no mean
        assert "| m | 7 | 1 | n/a | " in render_markdown([s], "r", list(range(n)))
        assert s["test_accuracy"] == pytest.approx(0.9 + (n - 1) / 200)
    (s,) = summarise(rows(0.98, missing, 0.96))  # the runs that have one
    assert s["val_accuracy"] == pytest.approx(0.97) and s["val_accuracy_std"] == pytest.approx(statistics.stdev(
        [0.98, 0.96]))
    (s,) = summarise(rows(missing, "0.95"))  # a value read back from results.csv
    assert s["val_accuracy"] == pytest.approx(0.95) and math.isnan(s["val_accuracy_std"])  # one value: no spread


def test_one_seed_shows_each_mean_without_a_spread():
    # `--seeds 0` wrote "0.9661 +- 0.0000" and "31,734 +- 0": a spread one run does not have
    row = {"model": "m", "seed": 0, "val_accuracy": 0.98, "test_accuracy": 0.97, "parameters": 7, "epochs": 1,
           "train_seconds": 2.5, "images_per_second": 1234.0}
    (s,) = summarise([row])
    table = render_markdown([s], "r", [0])
    assert table.startswith("Recipe `r`, seed 0.\n") and "| m | 7 | 1 | 0.9800 | 0.9700 | 2.5 | 1,234 |" in table


def test_the_chart_of_one_seed_draws_no_error_bars(tmp_path, monkeypatch):
    # it drew zero-length bars, their caps a tick on every bar, and said "mean +- std over seeds"
    import matplotlib
    from digits import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    nan = float("nan")
    summary = [{"model": "m", "val_accuracy": 0.98, "val_accuracy_std": nan, "test_accuracy": 0.97,
                "test_accuracy_std": nan}]
    plots.plot_comparison(summary, tmp_path / "comparison.png")
    ax = drawn[0].axes[0]
    errorbars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    caps = [y for c in errorbars for line in c.lines[1] for y in line.get_ydata()]
    assert len(errorbars) == 2 and not any(math.isfinite(y) for y in caps)
    assert ax.get_ylabel() == "accuracy (%)"
    plots.plt.close(drawn[0])


def test_the_comparison_chart_draws_no_validation_bars_when_no_run_has_a_validation_split(tmp_path, monkeypatch):
    from digits import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    nan = float("nan")
    summary = [{"model": m, "val_accuracy": nan, "val_accuracy_std": nan, "test_accuracy": 0.96,
                "test_accuracy_std": 0.01} for m in ("seed", "lenet5")]
    plots.plot_comparison(summary, tmp_path / "comparison.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["test"]  # no empty "validation" entry
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["96.00", "96.00"] and "nan" not in labels
    low, high = ax.get_xlim()
    assert low < -0.2 and high > 1.2  # both bars inside the axes: NaN bars had collapsed the x range
    plots.plt.close(drawn[0])

    drawn.clear()  # one model without: its bar reads n/a
    summary[1] = {"model": "lenet5", "val_accuracy": 0.95, "val_accuracy_std": 0.0, "test_accuracy": 0.96,
                  "test_accuracy_std": 0.01}
    plots.plot_comparison(summary, tmp_path / "comparison.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["validation", "test"]
    assert sorted(t.get_text() for t in ax.texts if t.get_text()) == ["95.00", "96.00", "96.00", "n/a"]
    drawn[0].canvas.draw()
    (na,) = [t for t in ax.texts if t.get_text() == "n/a"]
    box, axes = na.get_window_extent(), ax.get_window_extent()
    assert axes.x0 <= box.x0 and box.x1 <= axes.x1 and axes.y0 <= box.y0 and box.y1 <= axes.y1  # on show
    assert not box.overlaps(ax.get_legend().get_window_extent())  # not under the legend
    plots.plt.close(drawn[0])


def test_compare_rejects_unknown_models_and_bad_seeds(tiny_mnist, tmp_path, capsys):
    assert main(["compare", "--models", "seed,nope", "--data-dir", str(tiny_mnist), "--out",
                 str(tmp_path / "x"), *FAST]) == 2
    assert "unknown: nope" in capsys.readouterr().err
    assert main(["compare", "--models", "seed", "--seeds", "0,a", "--out", str(tmp_path / "x")]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", "--models", "seed", "--resume", "x.pt", "--out", str(tmp_path / "x")]) == 2
    assert "from scratch" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # its help names its own default folder, and none of the refused flags
        main(["compare", "--help"])
    shown = capsys.readouterr().out
    assert "runs/compare-<recipe>" in shown and "--resume" not in shown
    assert "new, empty or a previous comparison's" in " ".join(shown.split())
    assert "--model NAME" not in shown and "--seed N" not in shown and "tensorboard" not in shown
    assert "given to every model of --models" in " ".join(shown.split())  # --model-arg


def _no_gpu(monkeypatch):
    """This machine as one without CUDA or MPS, whatever it has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def _snapshot(folder) -> dict:
    """Every file under ``folder``, byte for byte, and every folder."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


DEVICE_AND_THREADS = [
    (["--device", "cuda"], "--device cuda: CUDA is not available on this machine"),
    (["--device", "cuda:3"], "--device cuda:3: CUDA is not available on this machine"),
    (["--device", "mps"], "--device mps: Apple's MPS backend is not available on this machine"),
    (["--device", "tpu"], "--device 'tpu': expected auto, cpu, cuda, cuda:N or mps"),
    (["--threads", "-1"], "--threads must not be negative, got -1")]


def _refused(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--models", "seed,protonet", "--seeds", "0,1,2"], "'protonet' is an embedding for `digits fewshot`"),
    (["--models", "resnet,lenet5", "--model-arg", "width=4"], "bad arguments for model 'lenet5'"),
    (["--models", "seed,lenet5,seed"], "--models names seed more than once; give each once"),
    (["--models", "seed", "--seeds", "0,1,0,1"], "--seeds names 0, 1 more than once; give each once"),
    (["--models", "seed", "--recipe", "short", "--scheduler", "nope"], "unknown scheduler 'nope'"),
    (["--models", "seed", "--model", "lenet5"], "compare trains the models of --models; --model applies to"),
    (["--models", "seed", "--seed", "0"], "compare trains on each seed of --seeds; --seed applies to"),
    (["--models", "seed", "--tensorboard"], "compare writes no TensorBoard logs"),
    *[(["--models", "seed,lenet5", *flags], message) for flags, message in DEVICE_AND_THREADS]])
def test_compare_refuses_what_cannot_run_before_it_trains_loads_data_or_makes_out(
        tiny_mnist, tmp_path, capsys, monkeypatch, flags, message):
    from digits import compare as compare_module

    _no_gpu(monkeypatch)
    monkeypatch.setattr(compare_module, "load_mnist", lambda *a, **k: pytest.fail("loaded the data"))
    monkeypatch.setattr(compare_module, "train_one", lambda *a: pytest.fail("trained a run"))
    out = tmp_path / "cmp"
    assert message in _refused(["compare", *flags, "--data-dir", str(tiny_mnist), "--out", str(out), *FAST],
                               capsys)
    assert not out.exists()


@pytest.mark.parametrize("flags, message", DEVICE_AND_THREADS)
def test_a_refused_device_or_thread_count_leaves_a_previous_comparison_byte_for_byte(
        tiny_mnist, tmp_path, capsys, monkeypatch, flags, message):
    # it loaded the data, deleted results.csv, results.md, comparison.png and seed-seed0/metrics.json,
    # and rewrote seed-seed0/config.json to say cuda before fit refused the device
    from digits import compare as compare_module

    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed,lenet5", "--seeds", "0,1", "--data-dir", str(tiny_mnist), "--out", str(out),
            "--threads", "1", *FAST]
    assert main(args) == 0
    before = _snapshot(out)
    assert {"results.csv", "results.md", "comparison.png", "seed-seed0/metrics.json"} <= set(before)
    _no_gpu(monkeypatch)
    monkeypatch.setattr(compare_module, "load_mnist", lambda *a, **k: pytest.fail("loaded the data"))
    monkeypatch.setattr(compare_module, "train_one", lambda *a: pytest.fail("trained a run"))
    capsys.readouterr()
    assert _refused([*args, *flags], capsys) == f"digits: error: {message}"
    assert _snapshot(out) == before


def test_a_file_in_the_way_of_a_run_folder_is_refused_before_out_is_touched(tiny_mnist, tmp_path, capsys,
                                                                            monkeypatch):
    # the run folder's mkdir failed only after the previous results had been deleted
    from digits import compare as compare_module

    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed", "--seeds", "0,1", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST]
    assert main(args) == 0
    shutil.rmtree(out / "seed-seed1")
    (out / "seed-seed1").write_text("in the way")
    before = _snapshot(out)
    monkeypatch.setattr(compare_module, "load_mnist", lambda *a, **k: pytest.fail("loaded the data"))
    capsys.readouterr()
    assert _refused(args, capsys) == (f"digits: error: cannot create output folder {out / 'seed-seed1'}: "
                                      f"{out / 'seed-seed1'} is a file, not a folder")
    assert _snapshot(out) == before


def _fake_row(config, data, folder) -> dict:
    return {"model": config.model.name, "seed": config.seed, "val_accuracy": 0.9, "test_accuracy": 0.9,
            "parameters": 1, "epochs": 1, "train_seconds": 1.0, "images_per_second": 1.0}


def test_model_arg_goes_to_every_compared_model_and_the_recipes_only_to_its_own(tiny_mnist, tmp_path,
                                                                                 monkeypatch):
    from digits import compare as compare_module

    seen = []
    monkeypatch.setattr(compare_module, "train_one", lambda config, data, folder: seen.append(
        (folder.name, config.model.kwargs)) or _fake_row(config, data, folder))
    assert main(["compare", "--models", "inception,bn-cnn", "--seeds", "0", "--recipe", "best", "--model-arg",
                 "width=4", "--data-dir", str(tiny_mnist), "--out", str(tmp_path / "cmp"), *FAST]) == 0
    assert seen == [("inception-seed0", {"width": 4}), ("bn-cnn-seed0", {"width": 4, "dropout": 0.2})]
    base = recipe("best")
    assert config_for(base, "resnet", 1, {"depth": 2}).model.kwargs == {"depth": 2}
    assert config_for(base, "bn-cnn", 1, {"width": 8}).model.kwargs == {"width": 8, "dropout": 0.2}


def test_a_rerun_removes_the_previous_results_first_and_a_refused_one_keeps_them(tiny_mnist, tmp_path, capsys,
                                                                                  monkeypatch):
    from digits import compare as compare_module
    from digits.errors import DigitsError

    out = tmp_path / "cmp"
    out.mkdir()
    results = ("results.csv", "results.md", "comparison.png")
    previous = ",".join(COLUMNS) + "\nthe previous comparison's\n"  # results.csv: a comparison's header
    for name in results:
        (out / name).write_text(previous)
    args = ["compare", "--models", "seed", "--data-dir", str(tiny_mnist), "--out", str(out), *FAST]
    assert "--seeds names 0" in _refused([*args, "--seeds", "0,0"], capsys)  # refused: nothing changed
    assert all((out / name).read_text() == previous for name in results)

    def fail(config, data, folder):
        raise DigitsError("the disk is full")

    monkeypatch.setattr(compare_module, "train_one", fail)  # the rerun fails at its first run
    assert "the disk is full" in _refused(args, capsys)
    assert not any((out / name).exists() for name in results)


def _run_config_json(model: str, seed: int) -> str:
    return json.dumps(config_for(recipe("seed"), model, seed).to_dict())


NOT_A_COMPARISON = {  # what a user's own folder may hold: compare would have deleted its results.*
    "notes": {"results.md": "# my results\n", "notes.txt": "keep\n"},
    "another csv": {"results.csv": "name,score\nme,1\n", "comparison.png": "my chart"},
    "a csv that only starts like compare's": {"results.csv": ",".join(COLUMNS[:2]) + "\n0,1\n"},
    "a digits run folder": {"config.json": _run_config_json("seed", 0), "metrics.json": "{}", "report.md": "r"},
    "a run-like folder whose config is not digits'": {"seed-seed0/config.json": "{}", "results.md": "mine"},
    "a config naming another run": {"seed-seed0/config.json": _run_config_json("lenet5", 0), "results.md": "x"},
    "a file named like a run folder": {"seed-seed0": "mine"},
}


@pytest.mark.parametrize("holds", NOT_A_COMPARISON.values(), ids=NOT_A_COMPARISON.keys())
def test_compare_refuses_a_non_empty_out_that_is_not_a_comparison_before_any_work(tiny_mnist, tmp_path, capsys,
                                                                                  monkeypatch, holds):
    # it deleted results.csv, results.md and comparison.png in any folder given as --out
    from digits import compare as compare_module

    out = tmp_path / "mine"
    for name, text in holds.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    monkeypatch.setattr(compare_module, "load_mnist", lambda *a, **k: pytest.fail("loaded the data"))
    monkeypatch.setattr(compare_module, "train_one", lambda *a: pytest.fail("trained a run"))
    err = _refused(["compare", "--models", "seed", "--seeds", "0", "--data-dir", str(tiny_mnist), "--out", str(out),
                    *FAST], capsys)
    assert err.startswith(f"digits: error: --out {out} holds files that are not a `digits compare` output (")
    assert "choose a new or empty folder, or a previous comparison's" in err
    assert _snapshot(out) == before


@pytest.mark.parametrize("holds", [
    {},  # an empty folder
    {"results.csv": ",".join(COLUMNS) + "\n"},  # a comparison whose runs have not finished
    {"lenet5-seed3/config.json": _run_config_json("lenet5", 3)},  # one killed in its first run
    {"seed-bn-seed0/config.json": _run_config_json("seed-bn", 0), "notes.txt": "the user's, kept"},
    {".DS_Store": "\0\0\0\1Bud1", "Thumbs.db": "x"}],  # made in a file manager: empty to the user
    ids=["empty", "results.csv", "a run folder", "a run folder and more", "a file manager's files"])
def test_compare_writes_into_an_empty_folder_or_a_previous_comparisons(tiny_mnist, tmp_path, monkeypatch, holds):
    from digits import compare as compare_module

    out = tmp_path / "cmp"
    out.mkdir()
    for name, text in holds.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    monkeypatch.setattr(compare_module, "train_one", _fake_row)
    assert main(["compare", "--models", "seed", "--seeds", "0", "--data-dir", str(tiny_mnist), "--out", str(out),
                 *FAST]) == 0
    assert (out / "results.md").exists() and all((out / name).exists() for name in holds)


def test_a_rerun_removes_a_runs_old_metrics_before_it_trains_so_a_failure_leaves_none(tiny_mnist, tmp_path,
                                                                                    capsys, monkeypatch):
    # a run that failed in its folder left the previous metrics.json beside its own new config.json
    from digits import compare as compare_module
    from digits.errors import DigitsError

    folder = tmp_path / "cmp" / "seed-seed0"
    folder.mkdir(parents=True)
    config = config_for(recipe("seed"), "seed", 0)
    config.optim.epochs = 9
    (folder / "config.json").write_text(json.dumps(config.to_dict()))  # what the previous compare wrote
    (folder / "metrics.json").write_text('{"test_accuracy": 0.5}')
    seen = []

    def diverge(config, data, out):
        seen.append(sorted(p.name for p in out.iterdir()))
        raise DigitsError("training diverged")

    monkeypatch.setattr(compare_module, "fit", diverge)
    args = ["compare", "--models", "seed", "--seeds", "0", "--data-dir", str(tiny_mnist), "--out",
            str(tmp_path / "cmp"), *FAST]
    assert "training diverged" in _refused(args, capsys)
    assert seen == [["config.json"]]  # the run started with its own config.json, and no metrics
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    assert json.loads((folder / "config.json").read_text())["optim"]["epochs"] == 1



def test_compare_holds_out_to_its_end_and_each_runs_folder_while_that_run_trains(tiny_mnist, tmp_path, capsys,
                                                                                 monkeypatch):
    # it never held OUT (a second compare removed the first one's results.csv, results.md and chart),
    # and held every run's folder until the process exited: one open descriptor per run, and folders
    # locked against other processes for the life of a notebook
    pytest.importorskip("fcntl")
    from digits import compare as compare_module
    from digits.errors import DigitsError

    out, held, real_fit = tmp_path / "cmp", [], compare_module.fit

    def fit(config, data, folder):
        held.append({p.name: folder_is_locked(p) for p in [out, *sorted(out.glob("seed-seed*"))]})
        if config.seed == 2:
            raise DigitsError("training diverged")
        return real_fit(config, data, folder)

    monkeypatch.setattr(compare_module, "fit", fit)
    args = ["compare", "--models", "seed", "--data-dir", str(tiny_mnist), "--out", str(out), "--threads", "1", *FAST]
    assert main([*args, "--seeds", "0,1"]) == 0
    assert held == [{"cmp": True, "seed-seed0": True},
                    {"cmp": True, "seed-seed0": False, "seed-seed1": True}]  # a finished run's folder is free
    assert not any(map(folder_is_locked, [out, out / "seed-seed0", out / "seed-seed1"]))  # and all of it, once it returns
    assert "training diverged" in _refused([*args, "--seeds", "0,2"], capsys)  # a failed run: freed all the same
    assert held[-1] == {"cmp": True, "seed-seed0": False, "seed-seed1": False, "seed-seed2": True}
    assert not any(map(folder_is_locked, [out, out / "seed-seed0", out / "seed-seed2"]))


# A `digits compare` whose second run waits: it holds OUT, as a long comparison does.
_HOLDER = """
import sys, time
from digits import compare
from digits.cli import main

def fit(config, data, folder, real=compare.fit):
    if config.seed == 1:
        print("training", flush=True)
        time.sleep(300)
    return real(config, data, folder)

compare.fit = fit
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_second_comparison_into_an_out_another_is_writing_is_refused_before_it_loads_data(tiny_mnist, tmp_path,
                                                                                           capsys, monkeypatch):
    # the second one deleted the running one's results.csv, results.md and comparison.png, and only then
    # stopped, at a run folder the first had finished: "another digits run is writing in OUT/seed-seed0"
    pytest.importorskip("fcntl")
    from digits import compare as compare_module

    out = tmp_path / "cmp"
    args = ["compare", "--models", "seed", "--seeds", "0,1", "--data-dir", str(tiny_mnist), "--out", str(out),
            "--threads", "1", *FAST]
    out.mkdir()  # a previous comparison's results, which the first of the two removes as it starts
    for name in ("results.csv", "results.md", "comparison.png"):
        (out / name).write_text(",".join(COLUMNS) + "\nthe previous comparison's\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        lines = iter(proc.stdout.readline, b"")  # its first run's line, then its second's start
        assert b"training\n" in lines, proc.stderr.read().decode()[-2000:]
        before = _snapshot(out)
        assert "results.csv" in before and "results.md" not in before  # its first run's row; no summary yet
        loaded = []
        monkeypatch.setattr(compare_module, "load_mnist", lambda *a, **k: loaded.append(a))
        capsys.readouterr()
        assert _refused(args, capsys) == (f"digits: error: another digits compare is writing in {out}; wait for "
                                          "it to end (or stop it), or choose another --out")
        assert _snapshot(out) == before and not loaded
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    monkeypatch.undo()
    assert main(args) == 0  # the killed comparison's hold went with it
    assert (out / "results.md").exists()


def test_summary_mean_and_std_by_hand():
    rows = [{"model": "m", "seed": s, "val_accuracy": v, "test_accuracy": t, "parameters": 7, "epochs": 1,
             "train_seconds": 2.0, "images_per_second": speed}
            for s, v, t, speed in ((0, 0.98, 0.97, 1000.0), (1, 0.99, 0.99, 2000.0), (2, 1.0, 0.98, 3000.0))]
    (s,) = summarise(rows)
    assert s["test_accuracy"] == pytest.approx(0.98) and s["test_accuracy_std"] == pytest.approx(0.01)
    assert s["val_accuracy_std"] == pytest.approx(0.01) and s["train_seconds_std"] == 0
    assert s["images_per_second_std"] == pytest.approx(1000.0)
    assert "| m | 7 | 1 | 0.9900 +- 0.0100 | 0.9800 +- 0.0100 | 2.0 +- 0.0 | 2,000 +- 1,000 |" in render_markdown(
        [s], "r", [0, 1, 2])


def test_recipes_seed_stays_the_tutorials_and_best_uses_the_techniques():
    assert {"seed", "short", "best"} <= set(list_recipes())
    seed = recipe("seed")
    assert (seed.optim.optimizer, seed.optim.scheduler, seed.optim.label_smoothing, seed.optim.ema_decay,
            seed.augment.rotate, seed.optim.nesterov) == ("sgd", "step", 0.0, 0.0, 0.0, False)
    best = recipe("best")
    assert best.model.name == "bn-cnn" and best.optim.nesterov and best.augment.rotate > 0
    # another model drops the recipe's model arguments (they fit only bn-cnn)
    assert config_for(best, "lenet5", 2).model.kwargs == {} and config_for(best, "bn-cnn", 2).model.kwargs
    assert best.tensorboard and not config_for(best, "lenet5", 2).tensorboard  # compare writes no tb/
    args = build_parser().parse_args(["run", "--recipe", "best", "--model", "resnet", "--rotate", "5"])
    config = config_from_args(args)
    assert config.model.kwargs == {} and config.augment.rotate == 5 and config.optim.lr == best.optim.lr


def test_a_refused_model_list_names_only_what_is_wrong(capsys):
    """It added "and --seeds at least one seed" to an unknown model, with the seeds fine."""
    from digits.compare import check_comparison
    from digits.errors import DigitsError
    from digits.models import list_models

    known = ", ".join(list_models())
    err = _refused(["compare", "--models", "seed,nosuch"], capsys)
    assert err == f"digits: error: --models needs registered names (unknown: nosuch; known: {known})"
    for models, seeds, says in (([], [0], f"--models names no model; give one or more of: {known}"),
                                (["seed"], [], "--seeds names no seed; give one or more")):
        with pytest.raises(DigitsError) as error:
            check_comparison(models, seeds, recipe("seed"))
        assert str(error.value) == says
