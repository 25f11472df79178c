"""2 processes (torchrun, DDP on gloo) against 1 process with the same global batch, on full MNIST.

For each seed: `digits train` in one process with --batch-size 256, and under
`torchrun --standalone --nproc_per_node 2` with --batch-size 128 per process (global 256); then the
checkpoint of each is scored by `digits evaluate` in a single process. Prints a Markdown table
(validation and test accuracy, training seconds, wall seconds of the whole command) and writes
the raw numbers to --json.

    python benchmarks/ddp_equivalence.py --data-dir ../shared/data/mnist --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch


def _train(launcher: list[str], out: Path, args: list[str], data_dir: str) -> dict:
    start = time.perf_counter()
    subprocess.run([*launcher, "train", "--out", str(out), "--data-dir", data_dir, "--no-progress", *args],
                   check=True)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    evaluate = [sys.executable, "-m", "digits", "evaluate", str(out / "checkpoint.pt"), "--json",
                "--data-dir", data_dir]
    test = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True).stdout)
    return {"val_accuracy": metrics["val_accuracy"], "test_accuracy": test["accuracy"],
            "train_seconds": metrics["train_seconds"], "wall_seconds": wall,
            "world_size": metrics.get("world_size", 1), "global_batch_size": metrics.get("global_batch_size")}


def _machine() -> str:
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else [platform.processor()]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{len(models)} x {models[0] if models else platform.machine()}, {gpu}"


def _mean(rows: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--threads-single", type=int, default=2, help="torch threads of the 1-process run")
    p.add_argument("--single-only", action="store_true", help="only the 1-process runs (e.g. another "
                   "--threads-single); the table then has one row")
    p.add_argument("--json", default="benchmarks/results/ddp_equivalence.json")
    a = p.parse_args()
    common = ["--epochs", str(a.epochs), "--val-size", str(a.val_size), "--no-tensorboard"]
    single = [sys.executable, "-m", "digits"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "digits"]
    results = {"1 process": [], "2 processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            one = [*common, "--seed", str(seed), "--batch-size", str(a.global_batch),
                   "--threads", str(a.threads_single)]
            two = [*common, "--seed", str(seed), "--batch-size", str(a.global_batch // 2), "--threads", "1"]
            results["1 process"].append(_train(single, Path(tmp) / f"one-{seed}", one, a.data_dir))
            if not a.single_only:
                results["2 processes"].append(_train(torchrun, Path(tmp) / f"two-{seed}", two, a.data_dir))
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "torch": torch.__version__,
              "machine": _machine(), "args": vars(a), "results": results}
    Path(a.json).write_text(json.dumps(record, indent=2) + "\n")
    _print_table(record, a)


def _print_table(record: dict, a: argparse.Namespace) -> None:
    results = {name: rows for name, rows in record["results"].items() if rows}
    print(f"| setup | threads | val accuracy % | test accuracy % | train s | wall s |  ({record['date']}, "
          f"torch {record['torch']}, seeds {a.seeds}, mean ± std)")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        threads = f"{a.threads_single}" if name == "1 process" else "1 per process"
        cells = [f"{m:.1f} ± {s:.1f}" if k.endswith("seconds") else f"{100 * m:.2f} ± {100 * s:.2f}"
                 for k in ("val_accuracy", "test_accuracy", "train_seconds", "wall_seconds")
                 for m, s in [_mean(rows, k)]]
        print(f"| {name}, global batch {a.global_batch} | {threads} | " + " | ".join(cells) + " |")
    if len(results) < 2:
        return
    diff = _mean(results["2 processes"], "test_accuracy")[0] - _mean(results["1 process"], "test_accuracy")[0]
    print(f"\nmean test accuracy, 2 processes minus 1: {100 * diff:+.3f} points")


if __name__ == "__main__":
    main()
