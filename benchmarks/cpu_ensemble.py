"""Ensembles of checkpoints, chosen on the validation split (issue 4's ensemble, on a CPU).

Scores every member of every candidate ensemble alone, then each candidate with and without
shifted views (``--tta``), on the validation images the members held out and on the test set.
The chosen ensemble is the candidate with the highest validation accuracy (ties: the one declared
first, then without shifted views); test accuracies are printed for all, but play no part in the
choice. The members are `digits train` runs; the seventh session's (BENCHMARKS.md) were trained
two at a time, one thread each, by loops like

    for seed in 0 1 2 ...; do PYTHONPATH=src python -m digits train --recipe best --model-arg width=16 \\
        --seed $seed --threads 1 --no-progress --data-dir ../shared/data/mnist --out runs/ens7/bn16-s$seed; done

and scored with

    PYTHONPATH=src python benchmarks/cpu_ensemble.py --data-dir ../shared/data/mnist \\
        --candidate 'all=runs/ens7/*/checkpoint.pt' --candidate 'bn16=runs/ens7/bn16-*/checkpoint.pt' \\
        --json benchmarks/results/cpu_ensemble.json

An ensemble's probabilities are the mean of its members' (each averaged over the views first), as
`digits evaluate` computes them; `digits evaluate A B ... [--tta] [--split val]` gives the same
accuracy for any one candidate.

``--declared NAME=GLOB`` adds an ensemble fixed before scoring, whose members may have trained on
all 60,000 images (`--val-size 0`: nothing held out to score them on): it is scored on the test
set only, with and without shifted views, and is never chosen. The eighth session's (BENCHMARKS.md):

    PYTHONPATH=src python benchmarks/cpu_ensemble.py --data-dir ../shared/data/mnist \
        --candidate 'all=runs/ens7/*/checkpoint.pt' \
        --declared 'all+full=runs/ens[78]/*/checkpoint.pt' --declared 'full=runs/ens8/*/checkpoint.pt' \
        --json benchmarks/results/cpu_ensemble_8.json

``--result NAME [--result-views]`` names the ensemble that a rule written before its members
trained made the result (the tenth session's: fresh width-32 members, with shifted views); it is
marked as the result, and the validation accuracies choose nothing:

    PYTHONPATH=src python benchmarks/cpu_ensemble.py --data-dir ../shared/data/mnist \
        --candidate 'fresh=runs/ens10/*/checkpoint.pt' --candidate 'bn32=runs/ens*/bn32-*/checkpoint.pt' \
        --declared 'all=runs/ens*/*/checkpoint.pt' --result fresh --result-views \
        --json benchmarks/results/cpu_ensemble_10.json
"""
from __future__ import annotations

import argparse
import glob
import json
import platform
import time

import torch

from digits.checkpoint import held_out_split, load_checkpoint
from digits.data import load_mnist
from digits.evaluate import accuracy, predict_probs


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, sep, pattern = text.partition("=")
    paths = sorted(glob.glob(pattern))
    if not sep or not name or not paths:
        raise SystemExit(f"--candidate {text!r}: expected NAME=GLOB matching at least one checkpoint")
    return name, paths


def choose(rows: list[dict]) -> dict:
    """The row with the highest validation accuracy; ties go to the earlier row (max keeps the first)."""
    return max(rows, key=lambda r: r["val_accuracy"])


def score(candidates: dict[str, list[str]], data_dir, batch_size: int = 1024,
          declared: dict[str, list[str]] | None = None, result: tuple[str, bool] | None = None) -> dict:
    """``candidates`` scored on validation and test and one chosen; ``declared`` on test only.

    ``result`` (a name and whether with shifted views): the ensemble a rule fixed before its members
    trained; it is the chosen row, and validation chooses nothing."""
    declared = declared or {}
    on_val = sorted({p for members in candidates.values() for p in members})
    paths = sorted(set(on_val) | {p for members in declared.values() for p in members})
    loaded = {p: load_checkpoint(p) for p in paths}
    val_size, split_seed = held_out_split([(p, loaded[p][1]) for p in on_val]) if on_val else (0, 0)
    data = load_mnist(data_dir, val_size=val_size, split_seed=split_seed, download=False)
    splits = {"val": data.val, "test": data.test}
    probs = {(p, split, tta): predict_probs([loaded[p][0]], splits[split].images, batch_size, tta)
             for p in paths for split in splits if split == "test" or p in on_val for tta in (False, True)}

    def accuracy_of(members: list[str], split: str, tta: bool) -> float | None:
        if any((p, split, tta) not in probs for p in members):
            return None  # a member that held out no validation images
        mean = torch.stack([probs[p, split, tta] for p in members]).mean(0)
        return accuracy(mean.argmax(1), splits[split].labels)

    def group(p: str) -> str:  # members that trained on all 60,000 images are a group of their own
        meta = loaded[p][1]["meta"]
        held_out = meta.get("config", {}).get("data", {}).get("val_size")
        return meta["model_name"] + (" (all 60,000)" if held_out == 0 else "")

    members = [{"checkpoint": p, "model": group(p), "seed": loaded[p][1]["meta"]["config"].get("seed"),
                **{f"{split}_accuracy": accuracy_of([p], split, False) for split in splits}} for p in paths]
    rows = [{"candidate": name, "members": len(chosen), "tta": tta, "declared": name in declared,
             **{f"{split}_accuracy": accuracy_of(chosen, split, tta) for split in splits}}
            for name, chosen in [*candidates.items(), *declared.items()] for tta in (False, True)]
    by_model = {}
    for m in members:
        by_model.setdefault(m["model"], []).append(m)
    means = {}
    for model, ms in by_model.items():
        means[model] = {"runs": len(ms)}
        for split in splits:
            scored = [m[f"{split}_accuracy"] for m in ms if m[f"{split}_accuracy"] is not None]
            means[model][f"mean_{split}_accuracy"] = sum(scored) / len(scored) if scored else None
    if result:
        chosen = next((r for r in rows if (r["candidate"], r["tta"]) == result), None)
        if chosen is None:
            raise SystemExit(f"--result {result[0]!r} names no --candidate or --declared ensemble")
    else:
        chosen = choose([r for r in rows if not r["declared"]]) if candidates else None
    return {"val_size": val_size, "split_seed": split_seed, "members": members, "per_model": means,
            "candidates": candidates, "declared": declared, "ensembles": rows, "chosen": chosen,
            "rule": "declared before training" if result else "highest validation accuracy"}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def table(result: dict) -> str:
    lines = ["| ensemble | members | shifted views | validation | test |", "| --- | ---: | --- | --- | --- |"]
    for r in result["ensembles"]:
        chosen = " (the result)" if result.get("rule") == "declared before training" else " (chosen)"
        mark = chosen if r is result["chosen"] else " (declared)" if r["declared"] else ""
        lines.append(f"| {r['candidate']}{mark} | {r['members']} | {'yes' if r['tta'] else 'no'} | "
                     f"{_fmt(r['val_accuracy'])} | {_fmt(r['test_accuracy'])} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidate", action="append", default=[], metavar="NAME=GLOB",
                   help="a candidate ensemble: a name and a glob of checkpoint.pt files (repeatable)")
    p.add_argument("--declared", action="append", default=[], metavar="NAME=GLOB",
                   help="an ensemble fixed in advance, scored on the test set only (repeatable)")
    p.add_argument("--result", default=None, metavar="NAME",
                   help="the ensemble a rule fixed before training: it is the result, validation chooses nothing")
    p.add_argument("--result-views", action="store_true", help="the --result ensemble is the one with shifted views")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: as `digits` finds it)")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    args = p.parse_args()
    if not args.candidate and not args.declared:
        p.error("give at least one --candidate or --declared ensemble")
    started = time.time()
    result = score(dict(map(parse_candidate, args.candidate)), args.data_dir,
                   declared=dict(map(parse_candidate, args.declared)),
                   result=(args.result, args.result_views) if args.result else None)
    result.update(torch=torch.__version__, machine=platform.processor() or platform.machine(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), seconds=round(time.time() - started, 1))
    for m in result["members"]:
        print(f"{m['checkpoint']}: {m['model']} seed {m['seed']}, validation {_fmt(m['val_accuracy'])}, "
              f"test {_fmt(m['test_accuracy'])}")
    for model, m in result["per_model"].items():
        print(f"{model}: {m['runs']} runs, mean validation {_fmt(m['mean_val_accuracy'])}, "
              f"mean test {_fmt(m['mean_test_accuracy'])}")
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
