"""What `digits train` recorded about each run of a set, gathered into one JSON file: the ensemble
members' seeds, training times and validation accuracies (BENCHMARKS.md), which their run folders
(runs/, not committed) hold.

    python benchmarks/run_summary.py 'runs/ens10/*' --json benchmarks/results/ensemble_members_10.json

Per run: its folder, model, seed, validation size, threads, train_seconds, total_seconds,
train_images_per_second, val_accuracy (absent when nothing was held out), torch and device.
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

KEPT = ("model", "seed", "val_accuracy", "train_seconds", "total_seconds", "train_images_per_second",
        "torch_version", "device")


def summarise(folder: Path) -> dict:
    """One run folder's metrics.json and config.json, the fields worth keeping."""
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    row = {"run": folder.as_posix(), **{k: metrics[k] for k in KEPT if metrics.get(k) is not None}}
    row["val_size"], row["threads"] = config.get("data", {}).get("val_size"), config.get("threads")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pattern", nargs="+", help="run folders (glob patterns)")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    folders = sorted({Path(f) for p in args.pattern for f in glob.glob(p) if (Path(f) / "metrics.json").is_file()})
    if not folders:
        raise SystemExit(f"run_summary: no run folder with a metrics.json matches {' '.join(args.pattern)}")
    rows = [summarise(f) for f in folders]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    print(f"{len(rows)} runs -> {args.json}")


if __name__ == "__main__":
    main()
