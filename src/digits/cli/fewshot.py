"""The `digits` few-shot commands: fewshot (the experiment, which trains an embedding) and
fewshot-predict (nearest prototype with it); each command's parser beside its handler.

    add_fewshot(subparsers)  # `digits fewshot --out DIR` then calls cmd_fewshot
"""
from __future__ import annotations

import argparse
import json
import sys

from .options import add_config_args, check_positive, data_config


def cmd_fewshot(args: argparse.Namespace) -> int:
    from ..fewshot.experiment import run_fewshot
    from ..recipes import fewshot_recipe

    config = fewshot_recipe(args.quick)
    for dest, value in vars(args).items():
        if dest.startswith("fewshot.") and value is not None:
            setattr(config, dest.split(".", 1)[1], value)
    check_positive(config, "subsets", "min_steps", "max_steps", "epochs", "batch_size", "lr",
                   "train_episodes", "train_shots", "queries", "episodes")
    result = run_fewshot(config, data_config(args), args.out, log=print)
    print(f"wrote {result.out / 'fewshot.md'}, fewshot.json, learning_curve.png, unseen_classes.png "
          f"and embedding.pt in {result.results['total_seconds'] / 60:.1f} min")
    return 0


def add_fewshot(sub) -> None:
    p = sub.add_parser("fewshot", help="accuracy from k images per class, and on digits never trained on")
    p.add_argument("--out", required=True, help="results folder: fewshot.json, fewshot.md, plots, embedding.pt")
    p.add_argument("--quick", action="store_true", help="fewer k, subsets, steps and episodes (about "
                   "a minute); the flags below still override")
    add_config_args(p, sections=("data", "fewshot"), defaults_from="default")
    p.set_defaults(handler=cmd_fewshot)


def cmd_fewshot_predict(args: argparse.Namespace) -> int:
    from ..fewshot.predict import load_embedding, load_queries, load_support, predict

    model = load_embedding(args.checkpoint)
    support = load_support(args.support)  # a model or support that cannot be used: exit 2
    queries = load_queries(args.query)  # a query that cannot be read: reported, the others predicted
    rows = []
    if queries.files:
        result = predict(model, support, queries.images)
        rows = [{"file": path, "class": support.classes[c], "probability": result.probs[i, c].item()}
                for i, (path, c) in enumerate(zip(queries.files, result.classes))]
    for file, message in queries.errors:  # as `digits predict`: one line each, exit code 1
        print(f"digits: error: {file}: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"classes": support.classes, "predictions": rows}, indent=2))
    else:
        for row in rows:
            print(f"{row['file']}: {row['class']} (p={row['probability']:.3f})")
    return 1 if queries.errors else 0


def add_fewshot_predict(sub) -> None:
    p = sub.add_parser("fewshot-predict", help="classify images by nearest prototype of example folders")
    p.add_argument("checkpoint", help="an embedding.pt written by `digits fewshot`")
    p.add_argument("--support", required=True, metavar="DIR", help="one sub-folder of example images "
                   "per class; the sub-folder names are the class names")
    p.add_argument("--query", required=True, nargs="+", metavar="PATH", help="image files or folders of "
                   "them (read recursively, as by `digits predict`) to classify")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(handler=cmd_fewshot_predict)
