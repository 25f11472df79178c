"""Fair comparison of models: each model trained with the same recipe on each seed, on the same
data, and summarised as mean +- std.

Writes into OUT: results.csv (one row per run, appended as each run finishes; val_accuracy is an
empty cell for runs without a validation split), results.md (the summary table), comparison.png
(accuracy with error bars) and OUT/<model>-seed<S>/ (each run's checkpoint.pt, config.json and
metrics.json). OUT must be new, empty or a previous comparison's (check_out). One comparison at a
time writes OUT: compare holds it (runfolder.lock_out) from before the data loads to its end, and
each run's folder while that run trains.

    rows = compare(["seed", "lenet5"], [0, 1, 2], recipe("short"), "runs/compare")
    rows = compare(["resnet", "inception"], [0, 1], recipe("short"), "runs/w16", model_args={"width": 16})
"""
from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path

from .config import RunConfig
from .data import MNIST, load_mnist
from .device import resolve_device, set_threads
from .errors import DigitsError
from .evaluate import evaluate
from .models import count_parameters, list_models
from .outpath import contents, file_in_the_way, make_folder
from .report import write_json, write_text
from .runfolder import check_out as check_run_out, lock_out, prepare_out, release_out
from .train import check_startable, fit

COLUMNS = ("model", "seed", "val_accuracy", "test_accuracy", "parameters", "epochs", "train_seconds",
           "images_per_second")
RESULTS = ("results.csv", "results.md", "comparison.png")  # the comparison's own files in OUT
HOLDER = "digits compare"  # who holds OUT, in the refusal of a second comparison into it


def config_for(base: RunConfig, model: str, seed: int, model_args: dict | None = None) -> RunConfig:
    """The base recipe for ``model`` and ``seed``. ``model_args`` (the user's --model-arg) apply to
    every model; the base's own model arguments (the recipe's) fit only its own model."""
    config = base.copy()
    kwargs = config.model.kwargs if model == config.model.name else {}
    config.model.name, config.model.kwargs = model, kwargs | dict(model_args or {})
    config.seed = seed
    config.tensorboard = False  # compare writes no TensorBoard logs: each run's config.json says so
    return config


def check_comparison(models: list[str], seeds: list[int], base: RunConfig,
                     model_args: dict | None = None) -> list[RunConfig]:
    """Every run's config, in training order, each checked as `digits run` checks its one: a model
    that cannot train (an embedding, an argument it does not take), a device this machine lacks or a
    negative thread count is refused before any run trains, the data is loaded or OUT is touched.
    Sets torch's thread count, as `digits run` does before it reads the data."""
    known = ", ".join(list_models())
    unknown = [m for m in models if m not in list_models()]
    if not models:  # each message names only what is wrong
        raise DigitsError(f"--models names no model; give one or more of: {known}")
    if unknown:
        raise DigitsError(f"--models needs registered names (unknown: {', '.join(unknown)}; known: {known})")
    if not seeds:
        raise DigitsError("--seeds names no seed; give one or more")
    for flag, values in (("--models", models), ("--seeds", seeds)):
        twice = [str(v) for v in dict.fromkeys(values) if values.count(v) > 1]
        if twice:  # the repeat would train into the same folder, and count as another sample in the std
            raise DigitsError(f"{flag} names {', '.join(twice)} more than once; give each once")
    configs = [config_for(base, model, seed, model_args) for model in models for seed in seeds]
    for config in configs:
        check_startable(config)
        resolve_device(config.device)  # fit checks these too, but only after the data is loaded and
        set_threads(config.threads)    # the previous results are gone
    return configs


def run_folder(out: Path, config: RunConfig) -> Path:
    return out / f"{config.model.name}-seed{config.seed}"


def check_out(out: Path, configs: list[RunConfig]) -> None:
    """OUT is new, empty or a previous comparison's (is_comparison), and every run's folder in it one
    `digits run` could write (runfolder.check_out); refused before any work: compare removes
    results.csv, results.md and comparison.png in OUT (a user's own), and a run's folder used to be
    refused only after that, and after the runs before it had trained."""
    try:
        held = contents(out) if out.is_dir() else []
        foreign = held and not is_comparison(out)
    except OSError as e:
        raise DigitsError(f"cannot read output folder {out}: {e.strerror or e}") from None
    if foreign:
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise DigitsError(f"--out {out} holds files that are not a `digits compare` output ({shown}); compare "
                          "replaces results.csv, results.md and comparison.png there, so choose a new or empty "
                          "folder, or a previous comparison's")
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise DigitsError(f"cannot create output folder {out}: {blocker} is a file, not a folder")
    for config in configs:  # each run's folder as `digits run --out` checks it (prepare_out does again)
        check_run_out(run_folder(out, config))


def train_one(config: RunConfig, data: MNIST, out: Path) -> dict:
    """Train one model on one seed into ``out``; its row of results.csv. ``out`` is held while the
    run trains and released when it ends (a finished run's folder is free to other processes)."""
    try:
        prepare_out(out, config, figures=False)  # a rerun's folder loses the previous run's metrics.json
        trained = fit(config, data, out)
        test = evaluate(trained.model, data.test.images, data.test.labels, config.test_batch_size,
                        config.channels_last)
        h = trained.history
        row = {"model": config.model.name, "seed": config.seed,
               "val_accuracy": h.val_acc[-1] if h.val_acc else None, "test_accuracy": test.accuracy,
               "parameters": count_parameters(trained.model), "epochs": config.optim.epochs,
               "train_seconds": trained.train_seconds, "images_per_second": trained.images_per_second}
        write_json(out / "metrics.json", row)
        return row
    finally:
        release_out(out)


def summarise(rows: list[dict]) -> list[dict]:
    """Per model, in first-seen order: mean and sample std of each measured column over the runs
    that measured it; NaN for the std of one value (a spread it does not have: results.md shows
    the mean alone; it said "+- 0.0000") and for both where none did (--val-size 0: n/a)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        s = {"model": model, "runs": len(mine), "parameters": mine[0]["parameters"],
             "epochs": mine[0]["epochs"]}
        for key in ("val_accuracy", "test_accuracy", "train_seconds", "images_per_second"):
            values = [v for v in (_measured(r[key]) for r in mine) if v is not None]
            s[key] = statistics.fmean(values) if values else math.nan
            s[key + "_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        out.append(s)
    return out


def _measured(value) -> float | None:
    """A row's value as a float, or None where the run has none: None (a run without a validation
    split), NaN, or an empty cell of results.csv."""
    if value is None or value == "":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def render_markdown(summary: list[dict], recipe_name: str, seeds: list[int]) -> str:
    over = (f"seeds {', '.join(map(str, seeds))}: mean +- std over seeds" if len(seeds) > 1
            else f"seed {seeds[0]}" if seeds else "no seeds")
    lines = [f"Recipe `{recipe_name}`, {over}.", "",
             "| model | parameters | epochs | validation accuracy | test accuracy | training time (s) "
             "| images/s |", "| --- | ---: | ---: | --- | --- | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['parameters']:,} | {s['epochs']} | "
                     f"{_mean_std(s, 'val_accuracy', '.4f')} | {_mean_std(s, 'test_accuracy', '.4f')} | "
                     f"{_mean_std(s, 'train_seconds', '.1f')} | {_mean_std(s, 'images_per_second', ',.0f')} |")
    return "\n".join(lines) + "\n"


def _accuracy(value: float | None) -> str:
    """To 4 places, or n/a for runs without a validation split (--val-size 0: None, or NaN)."""
    value = _measured(value)
    return "n/a" if value is None else f"{value:.4f}"


def _mean_std(s: dict, key: str, spec: str) -> str:
    """"mean +- std"; the mean alone when there is no std (one run); n/a when there is no mean."""
    mean, std = s[key], s[key + "_std"]
    if math.isnan(mean):
        return "n/a"
    return f"{mean:{spec}}" if math.isnan(std) else f"{mean:{spec}} +- {std:{spec}}"


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def is_comparison(out: Path) -> bool:
    """Whether the folder ``out`` is a `digits compare` output, finished or not: it holds a
    results.csv with compare's header (written after the first run), or a run folder
    MODEL-seedN holding the config.json of model MODEL and seed N (written as that run starts)."""
    try:
        with open(out / "results.csv", newline="", errors="replace") as f:
            if next(csv.reader(f), None) == list(COLUMNS):
                return True
    except (OSError, csv.Error):
        pass
    return any(_is_run_folder(folder) for folder in out.iterdir())


def _is_run_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(errors="replace"))
        return folder.name == f"{config['model']['name']}-seed{config['seed']}"
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _prepare_out(out: Path) -> None:
    """OUT, held, without the previous comparison's results: a rerun that fails part-way must not
    leave the old results.md and chart beside its own partial results.csv."""
    try:
        make_folder(out, f"output folder {out}")
    except OSError as e:
        raise DigitsError(f"cannot create output folder {out}: {e.strerror or e}") from None
    lock_out(out, HOLDER)  # (held already if OUT existed; else a second compare that made it too stops here)
    try:
        for name in RESULTS:
            (out / name).unlink(missing_ok=True)
    except OSError as e:
        raise DigitsError(f"cannot create output folder {out}: {e.strerror or e}") from None


def compare(models: list[str], seeds: list[int], base: RunConfig, out: str | Path,
            recipe_name: str = "custom", data: MNIST | None = None, log=print,
            model_args: dict | None = None) -> list[dict]:
    """Train every model on every seed; write results.csv, results.md and comparison.png.

    ``model_args``: constructor arguments given to every model (check_comparison checks them all,
    and check_out OUT, before OUT is touched or the data loaded). OUT is held (runfolder.lock_out)
    until compare returns or raises: another process's comparison into it is refused in one line."""
    configs = check_comparison(models, seeds, base, model_args)
    out = Path(out)
    check_out(out, configs)
    if out.is_dir():
        lock_out(out, HOLDER)  # another compare writing there: refused before the data loads or a file goes
    try:
        d = base.data
        data = data or load_mnist(d.data_dir, d.val_size, d.split_seed, d.download)
        _prepare_out(out)
        rows = []
        for config in configs:
            start = time.perf_counter()
            row = train_one(config, data, run_folder(out, config))
            _append_csv(out / "results.csv", row)
            rows.append(row)
            log(f"{config.model.name} seed {config.seed}: validation {_accuracy(row['val_accuracy'])}, "
                f"test {row['test_accuracy']:.4f}, {time.perf_counter() - start:.0f} s")
        summary = summarise(rows)
        write_text(out / "results.md", render_markdown(summary, recipe_name, seeds))
        from .plots import plot_comparison  # matplotlib only when drawing

        plot_comparison(summary, out / "comparison.png", title=f"recipe {recipe_name}, {len(seeds)} seed(s)")
        return rows
    finally:
        release_out(out)
