"""Pinned against unpinned torch threads (digits/affinity.py): whole `digits run` processes (seed
recipe), wall time, on a quiet machine and beside one busy process that this script starts.

    PYTHONPATH=src python benchmarks/thread_binding.py [--rounds 3] [--json benchmarks/results/thread_binding.json]

Variants, in turn within each round and the order reversed every other round (A B C, C B A):
`digits run --device cpu` as it is (threads pinned, one per core), the same with
OMP_PROC_BIND=false (the user's own setting wins, so nothing is pinned), and `--threads 1`. The
busy process is a Python loop, unpinned, as another user's job would be. Prints a table and
writes the raw times, torch version, CPU model and load averages as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = next((p / "shared" / "data" / "mnist" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
            ROOT.parent / "shared" / "data" / "mnist")
VARIANTS = {"pinned (default)": ({}, []), "unpinned (OMP_PROC_BIND=false)": ({"OMP_PROC_BIND": "false"}, []),
            "--threads 1": ({}, ["--threads", "1"])}


def timed_run(extra_env: dict, args: list[str], data: Path, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env.update(extra_env, PYTHONPATH=str(ROOT / "src"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "digits", "run", "--device", "cpu", "--data-dir", str(data),
                    "--out", str(out), "--no-progress", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DIGITS_DATA_DIR", DATA)))
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "thread_binding.json")
    args = ap.parse_args()
    times = {load: {v: [] for v in VARIANTS} for load in ("quiet", "one busy process")}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for load in times:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "quiet" else None
            try:
                for i in range(args.rounds):
                    for name in list(VARIANTS)[::1 if i % 2 == 0 else -1]:
                        extra_env, extra_args = VARIANTS[name]
                        times[load][name].append(round(timed_run(extra_env, extra_args, args.data, Path(tmp) / "r"), 2))
                        print(f"{load:18s} {name:32s} {times[load][name][-1]:6.2f} s", file=sys.stderr, flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    torch = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    result = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "cpus": os.cpu_count(),
              "torch": torch, "python": sys.executable, "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "times_s": times}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['date_utc']} UTC; {result['cpus']}-core {cpu}, torch {torch}; load average "
          f"{load_start[0]:.1f} at start, {result['load_average_end'][0]:.1f} at end")
    print("| load | " + " | ".join(f"{v}: median s" for v in VARIANTS) + " | unpinned / pinned |")
    print("|" + " --- |" * (len(VARIANTS) + 2))
    for load, rows in times.items():
        med = {v: statistics.median(t) for v, t in rows.items()}
        ratio = med["unpinned (OMP_PROC_BIND=false)"] / med["pinned (default)"]
        print(f"| {load} | " + " | ".join(f"{m:.1f}" for m in med.values()) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
