"""CPU inference and training throughput of a network (default: the seed network), in process:
the 10,000 test images in one evaluation pass, single-image prediction latency (p50 and p90 over
1,000 calls after 100 warm-up calls), and training images per second.

    PYTHONPATH=src python benchmarks/inference.py [--model seed] [--checkpoint runs/x/checkpoint.pt] [--threads 1,2]

Timing does not depend on the weights, so an untrained network is used unless --checkpoint is given.
Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from digits.checkpoint import load_checkpoint
from digits.data import load_mnist, normalize
from digits.evaluate import evaluate
from digits.models import create_model
from digits.optimizers import SGD

CL = torch.channels_last


def test_pass(model, data, batch_size: int, rounds: int = 3) -> float:
    evaluate(model, data.test.images, data.test.labels, batch_size, True)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        evaluate(model, data.test.images, data.test.labels, batch_size, True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def single_image(model, data, calls: int = 1000, warmup: int = 100) -> list[float]:
    """Seconds per call: one uint8 image normalised, predicted, its class read back."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + calls):
            image = data.test.images[i % len(data.test):i % len(data.test) + 1]
            start = time.perf_counter()
            model(normalize(image).contiguous(memory_format=CL)).argmax(1).item()
            times.append(time.perf_counter() - start)
    return times[warmup:]


def training(model, data, batch_size: int = 256, steps: int = 30) -> float:
    """Training images per second: forward, backward and SGD step on batches of the training split."""
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = normalize(data.train.images[:batch_size * (steps + 3)]).contiguous(memory_format=CL)
    y = data.train.labels[:len(x)]
    model.train()
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x[i * batch_size:(i + 1) * batch_size]), y[i * batch_size:(i + 1) * batch_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="seed")
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch-size", type=int, default=1024, help="evaluation batch (the test default)")
    args = ap.parse_args()
    data = load_mnist(val_size=0)
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else create_model(args.model)
        model = model.to(memory_format=CL).eval()
        seconds = test_pass(model, data, args.batch_size)
        latency = single_image(model, data)
        rows.append({"threads": threads, "test_pass_s": round(seconds, 4),
                     "test_images_per_s": round(len(data.test) / seconds),
                     "single_image_p50_ms": round(statistics.median(latency) * 1e3, 4),
                     "single_image_p90_ms": round(sorted(latency)[int(0.9 * len(latency))] * 1e3, 4),
                     "train_images_per_s": round(training(model, data))})
    print(f"{args.model}, torch {torch.__version__}, evaluation batch {args.batch_size}")
    print(f"{'threads':>7s} {'test pass s':>12s} {'test images/s':>14s} {'1 image p50 ms':>15s} "
          f"{'p90 ms':>8s} {'train images/s':>15s}")
    for r in rows:
        print(f"{r['threads']:7d} {r['test_pass_s']:12.3f} {r['test_images_per_s']:14,d} {r['single_image_p50_ms']:15.3f} "
              f"{r['single_image_p90_ms']:8.3f} {r['train_images_per_s']:15,d}")
    print(json.dumps({"model": args.model, "torch": torch.__version__, "results": rows}))


if __name__ == "__main__":
    main()
