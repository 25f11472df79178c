"""Validation accuracy and training CPU time of candidate settings for the `fast` recipe: how its
network and optimiser settings were chosen (on the validation split; the test set is not read).

    PYTHONPATH=src python benchmarks/tune_fast.py '{"epochs": 2, "model": {"c1": 8, "c2": 16}}' [--seeds 0,1,2]

The JSON overrides the fast recipe: OptimConfig fields, and "model" for the network's arguments.
One thread unless --threads says otherwise (the 2-core machine is shared). Prints one line per candidate.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from digits.data import load_mnist
from digits.recipes import recipe
from digits.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="+", help="one JSON object per candidate")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist()
    for text in args.overrides:
        spec = json.loads(text)
        accs, cpu, wall = [], [], []
        for seed in map(int, args.seeds.split(",")):
            config = recipe("fast")
            config.model.kwargs.update(spec.get("model", {}))
            for key, value in spec.items():
                if key != "model":
                    setattr(config.optim, key, value)
            config.seed, config.progress, config.tensorboard, config.threads = seed, False, False, args.threads
            start, start_wall = time.process_time(), time.perf_counter()
            accs.append(fit(config, data).history.val_acc[-1])
            cpu.append(time.process_time() - start)
            wall.append(time.perf_counter() - start_wall)
        print(json.dumps({"candidate": spec, "seeds": args.seeds, "val_acc": [round(a, 4) for a in accs],
                          "val_mean": round(sum(accs) / len(accs), 4),
                          "train_cpu_s_mean": round(sum(cpu) / len(cpu), 1),
                          "train_wall_s_mean": round(sum(wall) / len(wall), 1)}), flush=True)


if __name__ == "__main__":
    main()
