"""Accuracy of `digits predict` on MNIST test digits photographed (benchmarks/photo_set.py) against
the same model's accuracy on the test set itself, for seed models trained by `digits run` defaults.

    PYTHONPATH=src python benchmarks/photo_accuracy.py --runs runs/seed-0 runs/seed-1 runs/seed-2

Each run folder needs checkpoint.pt and metrics.json (`digits run --seed N --out runs/seed-N`).
Writes benchmarks/results/photo_accuracy.json and prints a Markdown table (`--table` prints the
table again from that file without measuring).
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
from photo_set import STYLES, label_of, write_photo_set  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "photo_accuracy.json"


def accuracy_of(checkpoint: Path, folder: Path) -> tuple[float, dict[str, float], float]:
    """Overall and per-style accuracy of `digits predict --json` on the folder, and its seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "digits", "predict", str(checkpoint), str(folder), "--json"],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    results = json.loads(done.stdout)
    hits = np.array([r["prediction"] == label_of(r["file"]) for r in results])
    index = np.array([int(Path(r["file"]).stem.split("_")[0]) for r in results])
    per_style = {s: float(hits[index % len(STYLES) == i].mean()) for i, s in enumerate(STYLES)}
    return float(hits.mean()), per_style, seconds


def main() -> None:
    import torch

    from digits.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", help="run folders of `digits run` (one per seed)")
    p.add_argument("--count", type=int, default=10000, help="test images to photograph (default all)")
    p.add_argument("--table", action="store_true", help="only print the table of the last results")
    args = p.parse_args()
    if args.table:
        return print_table(json.loads(RESULTS.read_text()))
    if not args.runs:
        p.error("--runs is required")
    test = load_mnist(val_size=0, download=False).test
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        write_photo_set(test.images[:args.count, 0].numpy(), test.labels[:args.count].numpy(), folder)
        for run in map(Path, args.runs):
            metrics = json.loads((run / "metrics.json").read_text())
            photo, per_style, seconds = accuracy_of(run / "checkpoint.pt", folder)
            rows.append({"run": str(run), "seed": metrics["seed"], "test_accuracy": metrics["test_accuracy"],
                         "photo_accuracy": photo, "per_style": per_style, "predict_seconds": seconds})
            print(f"{run}: test {100 * metrics['test_accuracy']:.2f}%, photographed {100 * photo:.2f}% "
                  f"({', '.join(f'{s} {100 * a:.2f}%' for s, a in per_style.items())}), {seconds:.0f} s",
                  flush=True)
    summary = {"images": args.count, "date": str(date.today()), "torch": torch.__version__,
               "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "runs": rows,
               "mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows])),
               "mean_photo_accuracy": float(np.mean([r["photo_accuracy"] for r in rows]))}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)


def print_table(summary: dict) -> None:
    rows = summary["runs"]
    print(f"\n| seed | test set | photographed | {' | '.join(STYLES)} |\n|---|---|---|" + "---|" * len(STYLES))
    for r in rows:
        print(f"| {r['seed']} | {100 * r['test_accuracy']:.2f}% | {100 * r['photo_accuracy']:.2f}% | "
              + " | ".join(f"{100 * a:.2f}%" for a in r["per_style"].values()) + " |")
    test, photo = (100 * np.array([r[k] for r in rows]) for k in ("test_accuracy", "photo_accuracy"))
    styles = [100 * np.mean([r["per_style"][s] for r in rows]) for s in STYLES]
    spread = (lambda a: f" ± {a.std(ddof=1):.2f}") if len(rows) > 1 else (lambda a: "")
    print(f"| mean | {test.mean():.2f}%{spread(test)} | {photo.mean():.2f}%{spread(photo)} | "
          + " | ".join(f"{a:.2f}%" for a in styles) + " |")


if __name__ == "__main__":
    main()
