"""What the `best` recipe costs on this machine: its real training loop (bn-cnn width 64,
augmentation, label smoothing, SGD Nesterov, one-cycle, batch 512) for one epoch over the first
N training images, and the time a full run (its 15 epochs of 55,000 images) implies at that rate.

    PYTHONPATH=src python benchmarks/best_recipe_cost.py --images 5120 --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform

import torch

from digits.data import MNIST, Split, load_mnist
from digits.recipes import recipe
from digits.train import fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5120, help="training images to time (default 5120)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = p.parse_args()
    data = load_mnist()
    empty = Split(data.val.images[:0], data.val.labels[:0])
    subset = MNIST(Split(data.train.images[:args.images], data.train.labels[:args.images]), empty, empty)
    config = recipe("best")
    full_epochs = config.optim.epochs
    config.optim.epochs, config.threads, config.device, config.progress = 1, args.threads, args.device, False
    result = fit(config, subset)
    full = full_epochs * 55_000 / result.images_per_second
    print(json.dumps({"recipe": "best", "images": args.images, "threads": torch.get_num_threads(),
                      "device": str(next(result.model.parameters()).device), "torch": torch.__version__,
                      "machine": platform.processor() or platform.machine(),
                      "train_seconds": round(result.train_seconds, 1),
                      "images_per_second": round(result.images_per_second, 1),
                      "implied_full_run_hours": round(full / 3600, 2)}, indent=2))


if __name__ == "__main__":
    main()
