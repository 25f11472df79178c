"""The `digits` command: argparse sub-commands that build configs, call the library and print.

No ML logic lives here. Errors a user can cause become one line on stderr and exit code 2.

    digits run --epochs 2 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import DigitsError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="folder holding the four MNIST IDX files (.gz or not); default: "
                   "$DIGITS_DATA_DIR, then ~/.cache/digits/mnist, downloading there if missing")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading MNIST")
    g.add_argument("--val-size", type=int, default=5000,
                   help="training images held out for validation (default 5000; 0 trains on all 60,000)")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split (default 0)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    g = p.add_argument_group("model and optimisation (defaults are the tutorial's)")
    g.add_argument("--model", default="seed", help="model name (see `digits models`; default seed)")
    g.add_argument("--epochs", type=int, default=2, help="passes over the training split (default 2)")
    g.add_argument("--batch-size", type=int, default=256, help="images per training step (default 256)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (default 5e-4)")
    g.add_argument("--optimizer", default="sgd", help="optimizer (default sgd)")
    g.add_argument("--scheduler", default="step", help="learning-rate schedule: step or none (default step)")
    g.add_argument("--step-size", type=int, default=6, help="StepLR: epochs between decays (default 6)")
    g.add_argument("--gamma", type=float, default=0.99, help="StepLR: decay factor (default 0.99)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default 0)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = one per core (default 0)")
    g.add_argument("--test-batch-size", type=int, default=1024, help="images per evaluation batch (default 1024)")
    g.add_argument("--no-channels-last", action="store_true",
                   help="keep the default memory format (channels_last is faster on CPU; same results)")
    g.add_argument("--checkpoint-every", type=int, default=0,
                   help="also checkpoint every N steps (default 0: at the end of each epoch only)")
    g.add_argument("--out", help="run folder (default runs/<model>-<timestamp>)")
    g.add_argument("--resume", metavar="CHECKPOINT", help="continue an interrupted run from its checkpoint.pt")
    g.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs to OUT/tb")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from .config import DataConfig, ModelConfig, OptimConfig, RunConfig

    return RunConfig(
        data=DataConfig(args.data_dir, args.val_size, args.split_seed, not args.no_download),
        model=ModelConfig(args.model),
        optim=OptimConfig(args.optimizer, args.lr, args.momentum, args.weight_decay, args.scheduler,
                          args.step_size, args.gamma, args.epochs, args.batch_size),
        seed=args.seed, device=args.device, threads=args.threads, test_batch_size=args.test_batch_size,
        channels_last=not args.no_channels_last, checkpoint_every=args.checkpoint_every,
        tensorboard=not args.no_tensorboard, progress=not args.no_progress)


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) <= 0:
            raise DigitsError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")


def cmd_run(args: argparse.Namespace, test: bool = True) -> int:
    from .pipeline import run

    _check_positive(args, "epochs", "batch_size", "test_batch_size", "lr")
    result = run(config_from_args(args), args.out, args.resume, figures=test, test=test)
    m = result.metrics
    val = "n/a" if m["val_accuracy"] is None else f"{100 * m['val_accuracy']:.2f}%"
    line = f"{m['model']} seed {m['seed']}: validation {val}"
    if test:
        line += f", test {100 * m['test_accuracy']:.2f}% ({m['test_errors']} errors)"
    print(f"{line}; trained {m['train_seconds']:.1f} s ({m['train_images_per_second']:,.0f} images/s), "
          f"whole run {m['total_seconds']:.1f} s")
    print(f"run folder: {result.out}" + (f" (report: {result.out / 'report.md'})" if test else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .data import load_mnist
    from .evaluate import evaluate
    from .train import resolve_device

    model, ckpt = load_checkpoint(args.checkpoint, resolve_device(args.device))
    data = load_mnist(args.data_dir, val_size=0, download=not args.no_download)
    result = evaluate(model, data.test.images, data.test.labels, args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{ckpt['meta']['model_name']} from {args.checkpoint}: test accuracy "
          f"{100 * result.accuracy:.2f}% on {len(data.test)} images")
    print("accuracy per batch: " + " ".join(f"{100 * a:.1f}" for a in result.batch_accuracies))
    print("confusion matrix (rows: true class, columns: predicted class)")
    print("true\\pred " + "".join(f"{c:>6}" for c in range(10)))
    for t, row in enumerate(result.confusion.tolist()):
        print(f"{t:>9} " + "".join(f"{v:>6}" for v in row))
    pc = result.per_class
    print("class  precision  recall      F1  support")
    for c in range(10):
        print(f"{c:>5}  {pc['precision'][c]:9.4f}  {pc['recall'][c]:6.4f}  {pc['f1'][c]:6.4f}  {pc['support'][c]:7d}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .data import load_mnist
    from .plots import plot_samples

    data = load_mnist(args.data_dir, val_size=0, download=not args.no_download)
    split = data.test if args.split == "test" else data.train
    start = args.start
    path = plot_samples(split.images[start:start + 60], args.out, split.labels[start:start + 60])
    print(f"wrote {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, create_model, list_models

    for name in list_models():
        print(f"{name:<12} {count_parameters(create_model(name)):>10,} parameters")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digits", description="Train, evaluate and use CNNs that "
                                     "recognise handwritten digits (MNIST).")
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the main job: train, test, draw figures, write a report")
    _add_train_args(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("train", help="train and checkpoint only (validation, no test pass or figures)")
    _add_train_args(p)
    p.set_defaults(handler=lambda a: cmd_run(a, test=False))

    p = sub.add_parser("evaluate", help="accuracy, confusion matrix and per-class metrics on the test set")
    p.add_argument("checkpoint", help="a checkpoint.pt written by `digits run` or `digits train`")
    _add_data_args(p)
    p.add_argument("--batch-size", type=int, default=1024, help="images per batch (default 1024)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("show", help="draw a 6x10 grid of MNIST images to a PNG")
    _add_data_args(p)
    p.add_argument("--split", choices=("train", "test"), default="train", help="which file (default train)")
    p.add_argument("--start", type=int, default=0, help="index of the first image (default 0)")
    p.add_argument("--out", default="samples.png", help="PNG to write (default samples.png)")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("models", help="list the registered models and their parameter counts")
    p.set_defaults(handler=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DigitsError as e:
        print(f"digits: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digits: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
