"""`digits fewshot` end to end: learning curve, unseen-class episodes, the embedding checkpoint,
and the results folder (fewshot.json, fewshot.md, learning_curve.png, unseen_classes.png).

    result = run_fewshot(FewShotConfig(), DataConfig(), out="docs/fewshot")
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..atomic import temp_path
from ..checkpoint import describe, save_checkpoint
from ..config import DataConfig, FewShotConfig
from ..data import MNIST, load_mnist
from ..errors import DigitsError
from ..models import check_classifier, create_model
from ..outpath import make_folder
from ..report import write_json, write_text
from ..device import resolve_device, set_threads
from .curve import FULL, learning_curve, parse_counts
from .episodes import summary
from .loop import quiet
from .protonet import EMBEDDING_MODEL
from .unseen import SEEN, UNSEEN, unseen_classes

METHODS = ("network", "nearest_neighbour", "nearest_class_mean")


@dataclass
class FewShotResult:
    out: Path
    results: dict


def aggregate_curve(cells: list[dict]) -> list[dict]:
    """One row per k: mean and sample std over subsets of each method's test accuracy."""
    rows = []
    for k in dict.fromkeys(c["k"] for c in cells):
        mine = [c for c in cells if c["k"] == k]
        row = {"k": k, "train_images": mine[0]["train_images"], "subsets": len(mine),
               "steps": mine[0]["steps"]}
        for method in METHODS:
            values = [c[method] for c in mine]
            s = summary(values)
            row[method] = {"mean": s["mean"], "std": s["std"], "values": values}
        rows.append(row)
    return rows


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "python": platform.python_version()}


# removed before a rerun trains; embedding.pt stays until the new one replaces it (atomically, once
# both experiments have trained, just before the results are written): a failed rerun must not
# cost the previous experiment's model, and the results beside it are gone, so none misdescribe it
RESULTS = ("fewshot.json", "fewshot.md", "learning_curve.png", "unseen_classes.png")


def _prepare(out: str | Path) -> Path:
    """OUT made, without a previous experiment's results, and shown writable, before any training: a
    read-only OUT failed only at embedding.pt, after the whole experiment (16-18 min) had trained, and
    a rerun stopped part-way left the old fewshot.json and fewshot.md beside a new embedding."""
    out = Path(out)
    try:
        make_folder(out, f"output folder {out}")
    except OSError as e:
        raise DigitsError(f"cannot create output folder {out}: {e.strerror or e}") from None
    for name in RESULTS:
        try:
            if (out / name).exists():
                (out / name).unlink()
        except OSError as e:
            raise DigitsError(f"cannot remove the previous experiment's {out / name}: {e.strerror or e} "
                              "(choose a writable --out)") from None
    probe = temp_path(out / RESULTS[0])  # named as atomic_write names its temporary files
    try:  # an existing folder may refuse new files (read-only, another user's) while it exists
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as e:
        raise DigitsError(f"cannot write in output folder {out}: {e.strerror or e} (choose a writable --out)") from None
    return out


def check_settings(cfg: FewShotConfig) -> None:
    """What ``run_fewshot`` refuses before it loads data or writes anything: a DigitsError naming
    the flag at fault."""
    parse_counts(cfg.shots, allow_full=True), parse_counts(cfg.eval_shots)
    set_threads(cfg.threads)  # a negative count is one line here, not torch's RuntimeError later
    if cfg.min_steps > cfg.max_steps:  # steps_for would quietly train for min_steps
        raise DigitsError(f"--min-steps {cfg.min_steps} is above --max-steps {cfg.max_steps}; "
                          "give --min-steps at most --max-steps")
    try:  # an embedding (protonet) would train, then fail in the confusion matrix of its 64 outputs
        check_classifier(create_model(cfg.model), cfg.model)
    except DigitsError as e:
        raise DigitsError(f"--curve-model: {e}") from None


def _fewest(labels: torch.Tensor, classes: list[int]) -> tuple[int, int]:
    """(digit, count) of the class in ``classes`` with the fewest images in ``labels``."""
    counts = torch.bincount(labels.cpu(), minlength=10)
    return min(((c, int(counts[c])) for c in classes), key=lambda dc: dc[1])


def check_sizes(cfg: FewShotConfig, data: MNIST) -> None:
    """The largest counts against the smallest class each draws from, before any training: the
    learning curve samples the training split's digits, the embedding trains on episodes of the
    training split's SEEN digits, and it is tested on episodes of the test set's UNSEEN digits."""
    ks = [k for k in parse_counts(cfg.shots, allow_full=True) if k != FULL]
    digit, n = _fewest(data.train.labels, sorted(set(data.train.labels.tolist())))
    if ks and max(ks) > n:
        raise DigitsError(f"--shots {max(ks)}: training digit {digit} has only {n:,} images in the "
                          f"training split; give at most {n:,} images per class (or 'full')")
    for flag, shots, split, name, classes in (
            ("--train-shots", cfg.train_shots, data.train, "training", SEEN),
            ("--eval-shots", max(parse_counts(cfg.eval_shots)), data.test, "test", UNSEEN)):
        digit, n = _fewest(split.labels, classes)
        if shots + cfg.queries > n:
            raise DigitsError(f"{flag} {shots} + --queries {cfg.queries} = {shots + cfg.queries:,} images "
                              f"of each of digits {classes[0]}-{classes[-1]}, but {name} digit {digit} has "
                              f"only {n:,}; lower {flag} or --queries")


def run_fewshot(cfg: FewShotConfig, data_cfg: DataConfig, out: str | Path, log=quiet) -> FewShotResult:
    """Run both experiments and write the results folder; returns what fewshot.json holds."""
    from . import plots, report  # matplotlib only when figures are drawn

    start = time.perf_counter()
    check_settings(cfg)
    device = resolve_device(cfg.device)
    data = load_mnist(data_cfg.data_dir, data_cfg.val_size, data_cfg.split_seed, data_cfg.download)
    check_sizes(cfg, data)  # OUT is made only once nothing is left to refuse
    out = _prepare(out)
    cells = learning_curve(data, cfg, device, log)
    unseen, model = unseen_classes(data, cfg, device, log)
    meta = describe(EMBEDDING_MODEL, {}, {"fewshot": asdict(cfg), "data": asdict(data_cfg)},
                    task="embedding", train_classes=SEEN)
    save_checkpoint(out / "embedding.pt", model, meta)
    results = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "device": str(device), "config": asdict(cfg), "data": asdict(data_cfg),
        "split_sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "learning_curve": {"rows": aggregate_curve(cells), "cells": cells},
        "unseen_classes": unseen, "embedding_checkpoint": "embedding.pt",
        "total_seconds": time.perf_counter() - start,
    }
    curve_rows = results["learning_curve"]["rows"]
    plots.plot_learning_curve(curve_rows, len(data.train) / 10, out / "learning_curve.png")
    plots.plot_unseen_classes(unseen["rows"], out / "unseen_classes.png")
    results["total_seconds"] = time.perf_counter() - start
    write_json(out / "fewshot.json", results)
    write_text(out / "fewshot.md", report.render(results))
    return FewShotResult(out, results)

