"""How often a torchrun process aborts while exiting: tests/ddp_worker.py (2 processes on gloo,
the synthetic data of the tests: train 1 epoch, resume to 2, save each process's weights) run N
times, each from a fresh kernel cache as in CI. Counts the runs that failed, and among them those
where a process ended in std::terminate ("terminate called without an active exception") after
both had written their final weights, that is while exiting. Writes --json.

    python benchmarks/ddp_exit.py --runs 100 --json benchmarks/results/ddp_exit.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABORT = "terminate called without an active exception"


def one_run(data: Path, folder: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(folder / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = folder / "out"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "ddp_worker.py"), str(data), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    finished = (out / "rank0.pt").exists() and (out / "rank1.pt").exists()
    return {"returncode": done.returncode, "abort_at_exit": done.returncode != 0 and ABORT in done.stderr
            and finished, "stderr_tail": done.stderr[-400:] if done.returncode else ""}


def _machine() -> str:
    info = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
              if line.startswith("model name")] if info.exists() else []
    return f"{os.cpu_count()} cores, {models[0] if models else platform.machine()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from conftest import write_mnist  # the tests' tiny synthetic MNIST

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_mnist(Path(tmp) / "mnist")
        for i in range(args.runs):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            rows.append(one_run(data, folder))
            print(f"run {i + 1}/{args.runs}: exit {rows[-1]['returncode']}"
                  + (" (abort while exiting)" if rows[-1]["abort_at_exit"] else ""), flush=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
              "machine": _machine(),
              "runs": len(rows), "failed": sum(r["returncode"] != 0 for r in rows),
              "aborted_while_exiting": sum(r["abort_at_exit"] for r in rows),
              "failures": [r for r in rows if r["returncode"] != 0]}
    print(f"{result['failed']} of {result['runs']} runs failed; {result['aborted_while_exiting']} aborted while exiting")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
