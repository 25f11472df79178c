"""Accuracy of `digits predict --number` on numbers written with MNIST test digits
(benchmarks/number_set.py), apart and touching, for seed models trained by `digits run` defaults.

    PYTHONPATH=src python benchmarks/number_accuracy.py --runs runs/seed-0 runs/seed-1 runs/seed-2

Each run folder needs checkpoint.pt and metrics.json (`digits run --seed N --out runs/seed-N`).
A number counts as read when every digit is right and none is missing or extra. For scale, the
chance that a model reads all the digits of a number right when each is cut out perfectly is its
test accuracy to the power of the number's length: the "expected" column. Writes
benchmarks/results/number_accuracy.json and prints a Markdown table (`--table` prints it again
from that file).
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
from number_set import number_of, write_number_set  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "number_accuracy.json"


def read_numbers(checkpoint: Path, folder: Path) -> tuple[dict, float]:
    """`digits predict --number --json` on the folder: {file name: number read}, and its seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "digits", "predict", str(checkpoint), str(folder),
                           "--number", "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # 1: some file had no digit in it, one "digits: error: FILE: ..." line each; anything else on
    # stderr (a traceback also exits 1) is a failure of the run
    if done.returncode not in (0, 1) or any(not line.startswith("digits: error: ")
                                           for line in done.stderr.splitlines() if line.strip()):
        raise SystemExit(f"digits predict failed (exit code {done.returncode}):\n{done.stderr.strip()}")
    return {Path(r["file"]).name: r["prediction"] for r in json.loads(done.stdout)}, seconds


def score(read: dict, files: list[Path]) -> dict:
    """Share of numbers read exactly: all, apart, touching; and of numbers with the right length."""
    truth = [number_of(f) for f in files]
    got = [read.get(f.name) for f in files]
    exact = np.array([g == n for g, (n, _) in zip(got, truth)])
    length = np.array([g is not None and len(g) == len(n) for g, (n, _) in zip(got, truth)])
    touching = np.array([t for _, t in truth])
    share = (lambda hits: float(hits.mean()) if hits.size else None)  # None: no such numbers
    return {"exact": float(exact.mean()), "apart": share(exact[~touching]),
            "touching": share(exact[touching]), "length_right": float(length.mean()),
            "touching_share": float(touching.mean())}


def main() -> None:
    import torch

    from digits.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", help="run folders of `digits run` (one per seed)")
    p.add_argument("--count", type=int, default=3000, help="numbers to write (default 3000)")
    p.add_argument("--number-seed", type=int, default=0,
                   help="seed of the layout and styling (default 0; another gives other numbers)")
    p.add_argument("--lengths", default="2,4",
                   help="fewest and most digits in a number (default 2,4; 1,1: single digits, to see how "
                        "often --number cuts one in two)")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    p.add_argument("--table", action="store_true", help="only print the table of the results file")
    args = p.parse_args()
    if args.table:
        return print_table(json.loads(args.json.read_text()))
    if not args.runs:
        p.error("--runs is required")
    test = load_mnist(val_size=0, download=False).test
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "numbers"
        fewest_most = tuple(map(int, args.lengths.split(",")))
        files = write_number_set(test.images[:, 0].numpy(), test.labels.numpy(), folder, args.count,
                                 seed=args.number_seed, lengths=fewest_most)
        lengths = np.array([len(number_of(f)[0]) for f in files])
        for run in map(Path, args.runs):
            metrics = json.loads((run / "metrics.json").read_text())
            read, seconds = read_numbers(run / "checkpoint.pt", folder)
            result = score(read, files)
            expected = float(np.mean(metrics["test_accuracy"] ** lengths))
            rows.append({"run": str(run), "seed": metrics["seed"], "test_accuracy": metrics["test_accuracy"],
                         "expected": expected, **result, "predict_seconds": seconds})
            print(f"{run}: {100 * result['exact']:.2f}% of numbers read (apart {_percent(result['apart'])}, "
                  f"touching {_percent(result['touching'])}; expected {100 * expected:.2f}%), {seconds:.0f} s",
                  flush=True)
    summary = {"numbers": args.count, "number_seed": args.number_seed, "lengths": list(fewest_most),
               "date": str(date.today()),
               "torch": torch.__version__, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
               "runs": rows, "mean_exact": float(np.mean([r["exact"] for r in rows]))}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)


def print_table(summary: dict) -> None:
    rows = summary["runs"]
    keys = ("expected", "exact", "apart", "touching", "length_right")
    print("\n| seed | expected | numbers read | digits apart | digits touching | length right |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | " + " | ".join(_percent(r[k]) for k in keys) + " |")
    spread = (lambda a: f" ± {100 * np.std(a, ddof=1):.2f}") if len(rows) > 1 else (lambda a: "")
    cells = []
    for k in keys:
        values = [r[k] for r in rows if r[k] is not None]
        cells.append(_percent(np.mean(values) if values else None) + (spread(values) if k == "exact" else ""))
    print("| mean | " + " | ".join(cells) + " |")


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}%"


if __name__ == "__main__":
    main()
