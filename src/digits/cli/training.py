"""The `digits` commands that train models or study them on MNIST: run, train, evaluate, show,
compare and models; each command's parser beside its handler.

    add_run(subparsers)  # `digits run --epochs 2` then calls cmd_run
"""
from __future__ import annotations

import argparse
import json

from ..errors import DigitsError
from ..figformat import figure_format
from .options import add_config_args, add_data_args, check_positive, config_from_args, data_config


# compare takes its models and seeds from --models and --seeds and writes no TensorBoard logs: it
# accepts these flags only to refuse them with a reason (cmd_compare), so its help hides them
_COMPARE_HELPS = {"model.name": argparse.SUPPRESS, "seed": argparse.SUPPRESS, "tensorboard": argparse.SUPPRESS,
                  "model.kwargs": "constructor arguments as KEY=VALUE, given to every model of --models (the "
                  "recipe's own model arguments go to its model only)"}


def _add_train_args(p: argparse.ArgumentParser, compare: bool = False) -> None:
    from ..recipes import list_recipes

    p.add_argument("--recipe", default="seed", help="starting configuration that the flags below "
                   f"override: {', '.join(list_recipes())} (default seed, the tutorial's)")
    add_config_args(p, helps=_COMPARE_HELPS if compare else None)
    p.add_argument("--out", help="folder of the comparison: new, empty or a previous comparison's "
                   "(default runs/compare-<recipe>)" if compare
                   else "run folder: a new or empty folder, or a previous run's, which a rerun replaces "
                   "(default runs/<model>-<timestamp>)")
    # compare accepts --resume only to refuse it with a reason (cmd_compare), so its help hides it
    p.add_argument("--resume", metavar="CHECKPOINT", help=argparse.SUPPRESS if compare
                   else "continue an interrupted run from its checkpoint.pt")


def cmd_run(args: argparse.Namespace, test: bool = True) -> int:
    from ..pipeline import run

    config = config_from_args(args)
    check_positive(config, "optim.epochs", "optim.batch_size", "test_batch_size", "optim.lr")
    result = run(config, args.out, args.resume, figures=test, test=test)
    if not result.main:  # under torchrun, rank 0 alone prints the summary
        return 0
    m = result.metrics
    val = "n/a" if m["val_accuracy"] is None else f"{100 * m['val_accuracy']:.2f}%"
    line = f"{m['model']} seed {m['seed']}: validation {val}"
    if test:
        line += f", test {100 * m['test_accuracy']:.2f}% ({m['test_errors']} errors)"
    trained = f"trained {m['train_seconds']:.1f} s ({m['train_images_per_second']:,.0f} images/s)"
    if result.train.resumed_at is not None:  # the whole run's time: say what this process added to it
        trained += (f" in all, {result.train.session_seconds:.1f} s of it from step {result.train.resumed_at} "
                    "on in this session")
    print(f"{line}; {trained}, data to report {m['total_seconds']:.1f} s")
    print(f"run folder: {result.out}" + (f" (report: {result.out / 'report.md'})" if test else ""))
    return 0


def add_run(sub) -> None:
    p = sub.add_parser("run", help="the main job: train, test, draw figures, write a report")
    _add_train_args(p)
    p.set_defaults(handler=cmd_run)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train and checkpoint only (validation, no test pass or figures)")
    _add_train_args(p)
    p.set_defaults(handler=lambda a: cmd_run(a, test=False))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..checkpoint import load_classifier
    from ..evaluate import evaluate_ensemble
    from ..device import resolve_device

    if args.batch_size <= 0:
        raise DigitsError(f"--batch-size must be positive, got {args.batch_size}")
    device = resolve_device(args.device)
    loaded = [load_classifier(path, device) for path in args.checkpoint]
    split = _evaluation_split(args, [ckpt for _, ckpt in loaded])
    result = evaluate_ensemble([m for m, _ in loaded], split.images, split.labels, args.batch_size,
                               tta=args.tta)
    if args.json:
        print(json.dumps({"split": args.split, "images": len(split), **result.to_dict()}, indent=2))
        return 0
    _print_evaluation(args, [ckpt for _, ckpt in loaded], len(split), result)
    return 0


def _evaluation_split(args: argparse.Namespace, checkpoints: list[dict]):
    """The test set, or with --split val the validation images the checkpoints were trained without."""
    from ..checkpoint import held_out_split
    from ..data import load_mnist

    d = data_config(args)
    if args.split != "val":
        return load_mnist(d.data_dir, val_size=0, download=d.download).test
    val_size, split_seed = held_out_split(list(zip(args.checkpoint, checkpoints)),
                                          vars(args).get("data.val_size"), vars(args).get("data.split_seed"))
    return load_mnist(d.data_dir, val_size=val_size, split_seed=split_seed, download=d.download).val


def _print_evaluation(args: argparse.Namespace, checkpoints: list[dict], images: int, result) -> None:
    what = " + ".join(f"{ckpt['meta']['model_name']} from {path}" for ckpt, path in zip(checkpoints, args.checkpoint))
    how = ((" (ensemble: mean probability)" if len(checkpoints) > 1 else "")
           + (" with shifted views" if args.tta else ""))
    name = "validation" if args.split == "val" else "test"
    print(f"{what}{how}: {name} accuracy {100 * result.accuracy:.2f}% on {images} images")
    print("accuracy per batch: " + " ".join(f"{100 * a:.1f}" for a in result.batch_accuracies))
    print("confusion matrix (rows: true class, columns: predicted class)")
    print("true\\pred " + "".join(f"{c:>6}" for c in range(10)))
    for t, row in enumerate(result.confusion.tolist()):
        print(f"{t:>9} " + "".join(f"{v:>6}" for v in row))
    pc = result.per_class
    print("class  precision  recall      F1  support")
    for c in range(10):
        print(f"{c:>5}  {pc['precision'][c]:9.4f}  {pc['recall'][c]:6.4f}  {pc['f1'][c]:6.4f}  {pc['support'][c]:7d}")


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, confusion matrix and per-class metrics on the test set "
                       "(or the validation split)")
    p.add_argument("checkpoint", nargs="+", help="a checkpoint.pt written by `digits run` or `digits train`; "
                   "several: evaluate their ensemble (the mean of their class probabilities)")
    add_data_args(p, helps={
        "data.val_size": "with --split val: how many training images the checkpoints held out (default: "
        "the number each checkpoint recorded, which no other value replaces; give it for checkpoints that "
        "record none); unused with --split test",
        "data.split_seed": "with --split val: the seed of that train/validation split (default: the value "
        "each checkpoint recorded, which no other value replaces; give it for checkpoints that record "
        "none); unused with --split test"})
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: the 10,000 test images (default); val: the validation images the checkpoints "
                   "were trained without (their recorded --val-size and --split-seed), for "
                   "choosing between models or ensembles without looking at the test set")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each model over the "
                   "image and its four 1-pixel shifts")
    p.add_argument("--batch-size", type=int, default=1024, help="images per batch (default 1024)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_evaluate)


def cmd_show(args: argparse.Namespace) -> int:
    from ..data import FILES, load_mnist, mnist_file
    from ..download import candidates
    from ..outpath import check_output
    from ..plots import plot_samples

    figure_format(args.out)  # before the data is read
    d = data_config(args)
    # the MNIST files it may read: a name without a suffix is written as PNG, over one of them
    folders = candidates(d.data_dir)  # (each name as found there too: any letter case, Kaggle's spelling)
    found = [mnist_file(folder, name) for folder in folders for name in FILES]
    check_output(args.out, [folder / name for folder in folders for name in FILES] + [f for f in found if f])
    data = load_mnist(d.data_dir, val_size=0, download=d.download)
    split = data.test if args.split == "test" else data.train
    start = args.start
    if not 0 <= start < len(split):
        raise DigitsError(f"--start must be in [0, {len(split)}) for the {args.split} split, got {start}")
    images = split.images[start:start + 60]  # fewer where the file ends first
    path = plot_samples(images, args.out, split.labels[start:start + 60])
    print(f"wrote {path}: {args.split} images {start} to {start + len(images) - 1}"
          + (f" (the last {len(images)} of the file)" if len(images) < 60 else ""))
    return 0


def add_show(sub) -> None:
    p = sub.add_parser("show", help="draw a 6x10 grid of MNIST images to an image file")
    add_data_args(p, skip=("data.val_size", "data.split_seed"))  # it draws from the whole files
    p.add_argument("--split", choices=("train", "test"), default="train", help="which file (default train)")
    p.add_argument("--start", type=int, default=0, help="index of the first image (default 0)")
    p.add_argument("--out", default="samples.png", help="image to write, in the format its suffix names: "
                   ".png, .jpg, .svg, .pdf, ... (default samples.png)")
    p.set_defaults(handler=cmd_show)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare

    for given, message in (
            (args.resume, "compare trains every run from scratch; --resume applies to `digits run` and `train`"),
            (vars(args)["model.name"], "compare trains the models of --models; --model applies to `digits run` "
             "and `train`"),
            (args.seed is not None, "compare trains on each seed of --seeds; --seed applies to `digits run` and `train`"),
            (args.tensorboard, "compare writes no TensorBoard logs; --tensorboard applies to `digits run` and `train`")):
        if given:
            raise DigitsError(message)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise DigitsError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    config = config_from_args(args)
    check_positive(config, "optim.epochs", "optim.batch_size", "test_batch_size", "optim.lr")
    out = args.out or f"runs/compare-{args.recipe}"
    compare([m for m in args.models.split(",") if m], seeds, config, out, args.recipe,
            model_args=dict(vars(args)["model.kwargs"] or []))  # the user's alone: they go to every model
    print(f"wrote {out}/results.csv, results.md and comparison.png")
    return 0


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="train several models on several seeds with one recipe; write "
                       "results.csv, results.md and a bar chart")
    p.add_argument("--models", required=True, help="comma-separated model names, e.g. seed,seed-bn,lenet5")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    _add_train_args(p, compare=True)
    p.set_defaults(handler=cmd_compare)


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import count_parameters, create_model, list_models

    for name in list_models():
        model = create_model(name)
        kind = "  (an embedding, for digits fewshot)" if getattr(model, "embedding_dim", None) else ""
        print(f"{name:<12} {count_parameters(model):>10,} parameters{kind}")
    return 0


def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered models and their parameter counts")
    p.set_defaults(handler=cmd_models)
