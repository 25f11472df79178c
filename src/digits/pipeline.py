"""The main job, end to end: data -> training -> test evaluation -> figures -> report.

    result = run(RunConfig(), out="runs/seed")     # writes the run folder, returns the metrics
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import distributed
from .config import RunConfig
from .data import MNIST, load_mnist
from .device import resolve_device, set_threads
from .errors import DigitsError
from .evaluate import EvalResult, evaluate
from .forked import run_both
from .models import count_parameters
from .report import render_report, write_json, write_text
from .runfolder import check_out, lock_out, prepare_out, release_out
from .train import TrainResult, check_startable, epoch_permutation, fit


@dataclass
class RunResult:
    out: Path
    metrics: dict
    train: TrainResult
    test: EvalResult | None
    main: bool = True  # False in the processes other than rank 0, which train but write nothing


def default_out(config: RunConfig) -> Path:
    return Path("runs") / f"{config.model.name}-{datetime.now():%Y%m%d-%H%M%S}"


def _metrics(config: RunConfig, trained: TrainResult, test: EvalResult | None, test_seconds: float,
             total: float, data: MNIST) -> dict:
    h = trained.history
    metrics = {
        "model": config.model.name, "seed": config.seed,
        "val_accuracy": h.val_acc[-1] if h.val_acc else None, "val_accuracy_per_epoch": h.val_acc,
        "train_seconds": trained.train_seconds, "train_images_per_second": trained.images_per_second,
        "iterations": trained.iter_num, "epoch_seconds": h.epoch_seconds,
        "resumed_at_step": trained.resumed_at,  # None unless --resume: the timings are the whole run's
        "parameters": count_parameters(trained.model), "device": str(next(trained.model.parameters()).device),
        "torch_version": torch.__version__, "total_seconds": total,
        "world_size": distributed.world_size(),
        "global_batch_size": config.optim.batch_size * distributed.world_size(),
    }
    if test is not None:
        metrics.update({
            "test_accuracy": test.accuracy, "test_errors": int((test.predictions != data.test.labels.cpu()).sum()),
            "test_images": len(data.test), "test_seconds": test_seconds,
            "test_images_per_second": len(data.test) / test_seconds if test_seconds else 0.0,
            "test_batch_accuracies": test.batch_accuracies,
            "confusion_matrix": test.confusion.tolist(), "per_class": test.per_class})
    return metrics


def draw_figures(out: Path, config: RunConfig, data: MNIST, trained: TrainResult, test: EvalResult) -> None:
    """The five figures, drawn in two processes at once (forked.py): 1.35 s -> ~1.0 s on 2 cores."""
    from . import plots  # matplotlib is imported only when figures are drawn

    figures = out / "figures"
    samples = data.train.images.cpu()[epoch_permutation(len(data.train), config.seed, 0)[:60]]
    images, labels = data.test.images.cpu(), data.test.labels.cpu()
    last = (len(labels) - 1) // config.test_batch_size * config.test_batch_size
    pick = slice(last, last + 16)
    here = [lambda: plots.plot_samples(samples, figures / "samples.png"),
            lambda: plots.plot_training_curves(trained.history, figures / "training_curves.png"),
            lambda: plots.plot_predictions(images[pick], test.predictions[pick], labels[pick],
                                           figures / "predictions.png")]
    there = [lambda: plots.plot_confusion_matrix(test.confusion, figures / "confusion_matrix.png"),
             lambda: plots.plot_misclassified(images, test.predictions, labels, figures / "misclassified.png")]
    run_both(here, there)


def run(config: RunConfig, out: str | Path | None = None, resume: str | Path | None = None,
        figures: bool = True, test: bool = True) -> RunResult:
    """Train, evaluate on the test set, draw the figures and write the report into ``out``."""
    start = time.perf_counter()
    set_threads(config.threads)  # before the data is read: a thread count holds for the whole run
    distributed.init(resolve_device(config.device))  # joins torchrun's processes, if it started this one
    if not distributed.is_main():
        if distributed.any_rank(False):  # process 0 refused to start (below): stop with it
            raise DigitsError("process 0 refused to start the run; see its message")
        return _worker(config, resume)
    refused = None
    try:
        check_startable(config, resume=resume)  # refused before the run folder is made: it leaves none behind
        out = check_out(out or default_out(config))  # (a folder not a run's, not writable: nothing changed)
        if out.is_dir():
            lock_out(out)  # another run writing there: refused before any work
    except DigitsError as e:
        refused = e
    if distributed.any_rank(refused is not None):  # (one process alone: refused is not None)
        raise refused
    try:
        data = _load(config)  # (no data: refused before OUT is touched, so a folder there stays as it was)
        failed, writer = None, None
        try:
            out = prepare_out(out, config, figures and test, resume=resume)
            writer = _open_writer(out, config)  # (tb/ cannot be written: rank 0 alone finds out)
        except Exception as e:  # (a folder made since check_out that another run holds, a failed write)
            failed = e
        if distributed.any_rank(failed is not None):  # the others wait for it (_worker): they stop with it
            raise failed
        return _run(config, out, resume, data, figures, test, start, writer)
    finally:
        release_out(out)


def _run(config: RunConfig, out: Path, resume, data: MNIST, figures: bool, test: bool, start: float,
         writer) -> RunResult:
    try:
        trained = fit(config, data, out, resume, writer)
        result, test_seconds = _test(trained, data, config, writer) if test else (None, 0.0)
    except OSError as e:  # raised by TensorBoard's writer (a full disk); checkpoints say so themselves
        if writer is None:  # not TensorBoard's (say, a closed stderr): main() reports it as it is, in one line
            raise
        raise _tensorboard_error(out, e) from None
    finally:
        if writer is not None:
            _close_quietly(writer)
    if figures and result is not None:
        draw_figures(out, config, data, trained, result)
    metrics = _metrics(config, trained, result, test_seconds, time.perf_counter() - start, data)
    write_json(out / "metrics.json", metrics)
    if result is not None:
        write_text(out / "report.md", render_report(config.to_dict(), metrics))
    return RunResult(out, metrics, trained, result)


def _test(trained: TrainResult, data: MNIST, config: RunConfig, writer) -> tuple[EvalResult, float]:
    """The test pass, its seconds, and the tutorial's per-batch test accuracy curve in TensorBoard."""
    start = time.perf_counter()
    result = evaluate(trained.model, data.test.images, data.test.labels, config.test_batch_size,
                      config.channels_last)
    seconds = time.perf_counter() - start
    if writer is not None:
        for i, acc in enumerate(result.batch_accuracies):
            writer.add_scalar("test accuracy per batch", 100.0 * acc, i)
    return result, seconds


def _load(config: RunConfig) -> MNIST:
    d = config.data
    return distributed.local_main_first(lambda: load_mnist(d.data_dir, d.val_size, d.split_seed, d.download))


def _worker(config: RunConfig, resume: str | Path | None) -> RunResult:
    """A process other than rank 0: trains its shard in step with the others, writes nothing."""
    data = _load(config)
    if distributed.any_rank(False):  # process 0 could not prepare the run folder (run): stop with it
        raise DigitsError("process 0 could not prepare the run folder; see its message")
    trained = fit(config, data, None, resume)
    return RunResult(Path(), {}, trained, None, main=False)


def _open_writer(out: Path, config: RunConfig):
    if not config.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter  # imported only when used: slow to import

    _quiet_writer_threads()
    try:
        return SummaryWriter(str(out / "tb"))
    except OSError as e:
        raise _tensorboard_error(out, e) from None


def _tensorboard_error(out: Path, error: OSError) -> DigitsError:
    return DigitsError(f"cannot write TensorBoard logs in {out / 'tb'}: {error.strerror or error} "
                       "(free some space, choose another --out, or pass --no-tensorboard)")


def _close_quietly(writer) -> None:
    try:
        writer.close()
    except OSError:
        pass  # the same write error was already raised from flush() or add_scalar()


def _quiet_writer_threads() -> None:
    """TensorBoard writes from a thread, which would print a traceback on a write error (full disk);
    the writer raises the same error again in the caller, which reports it as one line."""
    default = threading.excepthook
    if getattr(default, "quiet_tensorboard", False):
        return

    def hook(args):
        if not (issubclass(args.exc_type, OSError)
                and type(args.thread).__module__.startswith("tensorboard")):
            default(args)

    hook.quiet_tensorboard = True
    threading.excepthook = hook
