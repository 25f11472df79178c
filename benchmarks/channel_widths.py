"""Training-step time of the seed network's shape at other channel widths: why the `fast` recipe's
first layer has 8 channels, and what the seed network's 10 and 20 cost on an AVX2 CPU.

    PYTHONPATH=src python benchmarks/channel_widths.py [--threads 2] [--widths 10-20,8-24,16-24]

The network: conv 1->c1 k5, max-pool, ReLU; conv c1->c2 k5, max-pool, ReLU; linear c2*16->100->50->10
(the seed network at c1=10, c2=20), channels_last, SGD momentum 0.9, batch 256. Widths are
alternated within each round; prints the minimum and median milliseconds per step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 5), nn.Conv2d(c1, c2, 5)
        self.fc = nn.Sequential(nn.Linear(c2 * 16, 100), nn.Linear(100, 50), nn.Linear(50, 10))

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        return self.fc(F.relu(F.max_pool2d(self.conv2(x), 2)).flatten(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--widths", default="10-20,8-24,8-20,10-24,16-24,16-20")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (256,))
    steps = {}
    for w in args.widths.split(","):
        model = Net(*map(int, w.split("-"))).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, opt=opt):
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for _ in range(3):
            step()
        steps[w] = step
    times = {w: [] for w in steps}
    for _ in range(args.rounds):
        for w, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[w].append((time.perf_counter() - start) / args.steps * 1e3)
    print(f"threads {args.threads}, torch {torch.__version__}")
    for w, t in times.items():
        print(f"c1-c2 {w:>6}: min {min(t):6.1f} ms  median {statistics.median(t):6.1f} ms per step")
    print(json.dumps({"threads": args.threads, "ms_per_step": {w: round(statistics.median(t), 2)
                                                                for w, t in times.items()}}))


if __name__ == "__main__":
    main()
