"""How often a torchrun process aborts while exiting: tests/ddp_worker.py (2 processes on gloo,
the synthetic data of the tests: train 1 epoch, resume to 2, save each process's weights) run N
times, each from a fresh kernel cache as in CI. Counts the runs that failed, and among them those
where a process ended in std::terminate ("terminate called without an active exception") after
both had written their final weights, that is while exiting. Writes --json.

    python benchmarks/ddp_exit.py --runs 100 --json benchmarks/results/ddp_exit.json

To see where a process aborts: --keep DIR writes the whole stderr of each failed run to DIR
(run<i>.stderr), --faulthandler sets PYTHONFAULTHANDLER=1 in the processes (on SIGABRT Python
prints every thread's stack to stderr), and --core lets them dump core (the kernel's core_pattern
permitting) into the run's folder, whose core files --keep moves to DIR/run<i>/ for gdb.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABORT = "terminate called without an active exception"


def _allow_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def one_run(data: Path, folder: Path, faulthandler: bool = False, core: bool = False) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    if faulthandler:
        env["PYTHONFAULTHANDLER"] = "1"
    out = folder / "out"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), str(data), str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=folder,
                          preexec_fn=_allow_core if core else None)
    finished = (out / "rank0.pt").exists() and (out / "rank1.pt").exists()
    return {"returncode": done.returncode, "abort_at_exit": done.returncode != 0 and ABORT in done.stderr
            and finished, "stderr_tail": done.stderr[-400:] if done.returncode else "",
            "stderr": done.stderr if done.returncode else ""}


def _keep(row: dict, folder: Path, keep: Path, i: int) -> None:
    """The whole stderr of a failed run, and any core files its processes dumped, into ``keep``."""
    keep.mkdir(parents=True, exist_ok=True)
    (keep / f"run{i}.stderr").write_text(row["stderr"])
    for core in folder.glob("core*"):
        (keep / f"run{i}").mkdir(exist_ok=True)
        shutil.move(str(core), keep / f"run{i}" / core.name)


def _machine() -> str:
    info = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
              if line.startswith("model name")] if info.exists() else []
    return f"{os.cpu_count()} cores, {models[0] if models else platform.machine()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="folder for the stderr (and core files) of failed runs")
    p.add_argument("--faulthandler", action="store_true", help="PYTHONFAULTHANDLER=1: Python stacks on SIGABRT")
    p.add_argument("--core", action="store_true", help="let the processes dump core (into the run's folder)")
    args = p.parse_args()
    started, load = datetime.now(timezone.utc), os.getloadavg()[0]
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from conftest import write_mnist  # the tests' tiny synthetic MNIST

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_mnist(Path(tmp) / "mnist")
        for i in range(args.runs):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            rows.append(one_run(data, folder, args.faulthandler, args.core))
            if args.keep and rows[-1]["returncode"]:
                _keep(rows[-1], folder, args.keep, i)
            rows[-1].pop("stderr")
            shutil.rmtree(folder, ignore_errors=True)  # (core files are large)
            print(f"run {i + 1}/{args.runs}: exit {rows[-1]['returncode']}"
                  + (" (abort while exiting)" if rows[-1]["abort_at_exit"] else ""), flush=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "started": started.isoformat(timespec="seconds"), "torch": torch.__version__,
              "machine": _machine(), "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
              "faulthandler": args.faulthandler,
              "runs": len(rows), "failed": sum(r["returncode"] != 0 for r in rows),
              "aborted_while_exiting": sum(r["abort_at_exit"] for r in rows),
              "failures": [r for r in rows if r["returncode"] != 0]}
    print(f"{result['failed']} of {result['runs']} runs failed; {result['aborted_while_exiting']} aborted while exiting")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
