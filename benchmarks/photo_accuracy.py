"""Accuracy of `digits predict` on MNIST test digits photographed (benchmarks/photo_set.py) against
the same model's accuracy on the test set itself, for seed models trained by `digits run` defaults.

    PYTHONPATH=src python benchmarks/photo_accuracy.py --runs runs/seed-0 runs/seed-1 runs/seed-2

Each run folder needs checkpoint.pt and metrics.json (`digits run --seed N --out runs/seed-N`).
Writes benchmarks/results/photo_accuracy.json and prints a Markdown table (`--table` prints the
table again from that file without measuring). The harder styles, a shadow across the page and a
page lying on a desk, are measured with `--styles shadow,desk --json
benchmarks/results/photo_accuracy_hard.json`.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photo_set import HARD_STYLES, STYLES, label_of, write_photo_set  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "photo_accuracy.json"


def accuracy_of(checkpoint: Path, folder: Path, styles: tuple[str, ...]) -> tuple[float, dict[str, float], float]:
    """Overall and per-style accuracy of `digits predict --json` on the folder, and its seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "digits", "predict", str(checkpoint), str(folder), "--json"],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    results = json.loads(done.stdout)
    hits = np.array([r["prediction"] == label_of(r["file"]) for r in results])
    index = np.array([int(Path(r["file"]).stem.split("_")[0]) for r in results])
    per_style = {s: float(hits[index % len(styles) == i].mean()) for i, s in enumerate(styles)}
    return float(hits.mean()), per_style, seconds


def main() -> None:
    import torch

    from digits.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", help="run folders of `digits run` (one per seed)")
    p.add_argument("--count", type=int, default=10000, help="test images to photograph (default all)")
    p.add_argument("--styles", default=",".join(STYLES),
                   help=f"comma-separated, cycled through the images (default {','.join(STYLES)}; "
                        f"also {','.join(HARD_STYLES)})")
    p.add_argument("--photo-seed", type=int, default=0,
                   help="seed of the random styling (default 0; another gives other pictures of the same digits)")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    p.add_argument("--table", action="store_true", help="only print the table of the results file")
    args = p.parse_args()
    if args.table:
        return print_table(json.loads(args.json.read_text()))
    styles = tuple(args.styles.split(","))
    if unknown := set(styles) - set(STYLES + HARD_STYLES):
        p.error(f"unknown style(s): {', '.join(sorted(unknown))}")
    if not args.runs:
        p.error("--runs is required")
    test = load_mnist(val_size=0, download=False).test
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        write_photo_set(test.images[:args.count, 0].numpy(), test.labels[:args.count].numpy(), folder,
                        seed=args.photo_seed, styles=styles)
        for run in map(Path, args.runs):
            metrics = json.loads((run / "metrics.json").read_text())
            photo, per_style, seconds = accuracy_of(run / "checkpoint.pt", folder, styles)
            rows.append({"run": str(run), "seed": metrics["seed"], "test_accuracy": metrics["test_accuracy"],
                         "photo_accuracy": photo, "per_style": per_style, "predict_seconds": seconds})
            print(f"{run}: test {100 * metrics['test_accuracy']:.2f}%, photographed {100 * photo:.2f}% "
                  f"({', '.join(f'{s} {100 * a:.2f}%' for s, a in per_style.items())}), {seconds:.0f} s",
                  flush=True)
    summary = {"images": args.count, "styles": list(styles), "photo_seed": args.photo_seed, "date": str(date.today()), "torch": torch.__version__,
               "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "runs": rows,
               "mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows])),
               "mean_photo_accuracy": float(np.mean([r["photo_accuracy"] for r in rows]))}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)


def print_table(summary: dict) -> None:
    rows, styles = summary["runs"], summary.get("styles", STYLES)
    print(f"\n| seed | test set | photographed | {' | '.join(styles)} |\n|---|---|---|" + "---|" * len(styles))
    for r in rows:
        print(f"| {r['seed']} | {100 * r['test_accuracy']:.2f}% | {100 * r['photo_accuracy']:.2f}% | "
              + " | ".join(f"{100 * a:.2f}%" for a in r["per_style"].values()) + " |")
    test, photo = (100 * np.array([r[k] for r in rows]) for k in ("test_accuracy", "photo_accuracy"))
    means = [100 * np.mean([r["per_style"][s] for r in rows]) for s in styles]
    spread = (lambda a: f" ± {a.std(ddof=1):.2f}") if len(rows) > 1 else (lambda a: "")
    print(f"| mean | {test.mean():.2f}%{spread(test)} | {photo.mean():.2f}%{spread(photo)} | "
          + " | ".join(f"{a:.2f}%" for a in means) + " |")


if __name__ == "__main__":
    main()
