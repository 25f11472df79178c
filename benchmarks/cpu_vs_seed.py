"""Side by side on the CPU: the seed tutorial's own program against `digits run` (seed recipe and
fast recipe), whole processes, wall time, same interpreter and torch, same thread count, same seeds.

    python3 benchmarks/cpu_vs_seed.py [--seeds 0,1,2] [--threads 1] [--json benchmarks/results/cpu.json]

Set-up (rerunnable): ../shared/peers/setup.sh makes (or finds) the peer's environment, with the
torch and torchvision the seed program needs; digits is installed into it (`pip install --no-deps
-e .`, plus tqdm and matplotlib) and run from this checkout's src/, so both run under one
interpreter. The commands alternate, one round per seed, A B C then C B A and so on (no program is
always first), because the machine is shared and its load drifts: compare the ratio of medians,
never times from different runs. The JSON is rewritten after every run, so a failure keeps the
runs measured before it. The seed recipe runs with `--val-size 0` (all 60,000 training images,
as the seed program); with every core in use, every program's threads are pinned one per core, as
`digits run` pins its own (both recorded in the JSON: "commands", "omp_placement").
Needs only the standard library itself. Prints a Markdown table; writes the raw figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (a git worktree may sit one level deeper)
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared" / "peers").is_dir()), ROOT.parent / "shared")
PEERS, DATA = SHARED / "peers", SHARED / "data" / "mnist"
PROGRAMS = ("seed program", "digits run (seed recipe)", "digits run --recipe fast")
# also measurable with --programs: the seed recipe on torch's own operators (digits/convpool.py off)
NO_KERNELS = "digits run (seed recipe; DIGITS_NO_KERNEL=1)"
_PLACEMENT = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")  # digits/affinity.py's


def setup(venv: str) -> str:
    """The peer's python, with digits and its light dependencies installed beside torch."""
    out = subprocess.run(["bash", str(PEERS / "setup.sh"), venv], check=True, capture_output=True, text=True)
    python = out.stdout.strip().splitlines()[-1]
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True, capture_output=True)
    if subprocess.run([python, "-c", "import tqdm, matplotlib"], capture_output=True).returncode:
        subprocess.run(pip + ["tqdm", "matplotlib"], check=True, capture_output=True)
    return python


def command(program: str, python: str, seed: int, threads: int, data: Path, out: Path) -> list[str]:
    if program == PROGRAMS[0]:
        return [python, str(PEERS / "seed_mnist.py"), "--data", str(data), "--seed", str(seed),
                "--threads", str(threads)]
    recipe = "fast" if "fast" in program else "seed"
    # the seed recipe trains on all 60,000 images, as the seed program does: by default digits holds
    # out 5,000 for validation (215 steps an epoch, not 235, plus a validation pass each epoch). The
    # fast recipe runs as a user runs it, with its validation split.
    split = ["--val-size", "0"] if recipe == "seed" else []
    return [python, "-m", "digits", "run", "--recipe", recipe, *split, "--seed", str(seed),
            "--threads", str(threads), "--data-dir", str(data), "--out", str(out)]


def placement(threads: int) -> dict[str, str]:
    """The OpenMP thread placement every program gets: `digits run` pins its threads one per core
    when they use every core (digits/affinity.py), so the seed program is given the same; with
    fewer threads neither is pinned. (digits sets it itself, so that its forked figure process
    can leave the pinned core; the peer gets it through its environment.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    pinned = sys.platform.startswith("linux") and cores > 1 and threads in (0, cores)
    return {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"} if pinned else {}


def timed_run(cmd: list[str], out: Path, kernels: bool = True, omp: dict[str, str] | None = None) -> dict:
    """Run one whole process; wall and CPU seconds, and the test accuracy it reports. ``omp``: the
    OpenMP placement to set in its environment (every other placement variable is removed)."""
    env = {k: v for k, v in os.environ.items() if k not in _PLACEMENT}
    env.update(omp or {}, PYTHONPATH=str(ROOT / "src"))
    env.pop("DIGITS_NO_KERNEL", None)
    if not kernels:
        env["DIGITS_NO_KERNEL"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    if "seed_mnist.py" in cmd[1]:
        accuracy = json.loads(proc.stdout.strip().splitlines()[-1])["test_acc"]
    else:
        accuracy = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "test_accuracy": accuracy}


def machine(python: str) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    torch = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch, "python": platform.python_version()}


def summarise(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for program, rows in runs.items():
        summary[program] = {
            "median_wall_s": statistics.median(r["wall_s"] for r in rows),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in rows),
            "mean_test_accuracy": sum(r["test_accuracy"] for r in rows) / len(rows)}
    if PROGRAMS[0] in summary:  # without the seed program: medians only
        base = summary[PROGRAMS[0]]["median_wall_s"]
        for program in summary:
            if program != PROGRAMS[0]:
                summary[program]["speedup_vs_seed_program"] = round(base / summary[program]["median_wall_s"], 2)
    return summary


def round_order(programs: list[str], round_index: int) -> list[str]:
    """A B C, then C B A, then A B C ...: no program always runs first (after a quiet spell, say)."""
    return programs if round_index % 2 == 0 else programs[::-1]


def table(result: dict) -> str:
    seeds = result["seeds"]
    head = "| program | " + " | ".join(f"seed {s}: acc, wall s" for s in seeds) + \
        " | mean acc | median wall s | median CPU s | speed-up |"
    lines = [head, "|" + " --- |" * (len(seeds) + 5)]
    for program, rows in result["runs"].items():
        s = result["summary"][program]
        cells = [f"{r['test_accuracy']:.4f}, {r['wall_s']:.1f}" for r in rows]
        speed = f"{s['speedup_vs_seed_program']:.2f}x" if "speedup_vs_seed_program" in s else (
            "1x" if program == PROGRAMS[0] else "-")
        lines.append(f"| {program} | " + " | ".join(cells) + f" | {s['mean_test_accuracy']:.4f} | "
                     f"{s['median_wall_s']:.1f} | {s['median_cpu_s']:.1f} | {speed} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every program (default 1: on a shared 2-core machine a second "
                         "thread mostly waits for a descheduled one)")
    ap.add_argument("--venv", default="/tmp/seed-peer-venv", help="the peer environment (made if missing)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DIGITS_DATA_DIR", DATA)))
    ap.add_argument("--programs", default=",".join(PROGRAMS),
                    help=f"comma-separated, in run order: any of {', '.join(PROGRAMS)}, {NO_KERNELS}")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cpu.json")
    args = ap.parse_args()
    python = setup(args.venv)
    seeds = [int(s) for s in args.seeds.split(",")]
    programs = args.programs.split(",")
    unknown = [p for p in programs if p not in (*PROGRAMS, NO_KERNELS)]
    if unknown:
        raise SystemExit(f"unknown program(s): {', '.join(unknown)}")
    result = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "machine": machine(python),
              "threads": args.threads, "seeds": seeds, "load_average_start": os.getloadavg(),
              "omp_placement": placement(args.threads),
              "commands": {p: command(p, "python", seeds[0], args.threads, args.data, Path("OUT")) for p in programs},
              "runs": {p: [] for p in programs}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(seeds):  # one round per seed
            for program in round_order(programs, i):
                out = Path(tmp) / f"{len(result['runs'][program])}-{program.split()[-1]}"
                try:
                    cmd = command(program, python, seed, args.threads, args.data, out)
                    omp = result["omp_placement"] if program == PROGRAMS[0] else None  # digits sets its own
                    row = timed_run(cmd, out, kernels=program != NO_KERNELS, omp=omp)
                except RuntimeError as error:
                    result["failed"] = str(error)
                    args.json.write_text(json.dumps(result, indent=2) + "\n")
                    raise SystemExit(f"{error}\n(the runs before it are in {args.json})") from None
                result["runs"][program].append({"seed": seed, **row})
                args.json.write_text(json.dumps(result, indent=2) + "\n")
                print(f"{program:28s} seed {seed}: {row}", file=sys.stderr, flush=True)
    result["load_average_end"] = os.getloadavg()
    result["summary"] = summarise(result["runs"])
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"{result['date_utc']} UTC; {m['cores']}-core {m['cpu']}, torch {m['torch']}, {args.threads} thread(s); "
          f"load average {result['load_average_start'][0]:.1f} at start, {result['load_average_end'][0]:.1f} at end")
    if result["summary"]:
        print(table(result))
    print(f"raw figures: {args.json}")


if __name__ == "__main__":
    main()
