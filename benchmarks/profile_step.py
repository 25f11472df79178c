"""One training step of a recipe's network (batch from the recipe), in several ways: memory
format, the tutorial's ReLU-then-pool order against ours, thread counts, and torch.compile
(its compile time reported apart). CPU and wall milliseconds per step, median of rounds.

    PYTHONPATH=src python benchmarks/profile_step.py [--variants plain_nchw,plain_cl,ours_cl,torch_ops_cl,compiled]
        [--threads 1,2] [--steps 20] [--rounds 5]

`ours_cl` is the package's forward as a run trains it (with digits/convpool.py's kernels where it
has them), `torch_ops_cl` the same with torch's operators for every block. Variants are run in
turn within each round (A B C A B C ...), so machine load hits all alike. Prints a table and,
last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from digits import convpool
from digits.models import create_model
from digits.optim import make_optimizer
from digits.recipes import recipe

CL, NCHW = torch.channels_last, torch.contiguous_format


def tutorial_forward(model, images):
    """The seed network as the tutorial runs it: each block's Sequential is conv, ReLU, pool."""
    return model.fc(model.conv2(model.conv1(images)).flatten(1))


def _without_kernels(model):
    def forward(x):
        previous = convpool.set_enabled(False)
        try:
            return model(x)
        finally:
            convpool.set_enabled(previous)
    return forward


def build(variant: str, recipe_name: str):
    config = recipe(recipe_name)
    torch.manual_seed(0)
    model = create_model(config.model.name, **config.model.kwargs)
    fmt = NCHW if variant.endswith("nchw") else CL
    model = model.to(memory_format=fmt)
    forward = model
    if variant.startswith("plain"):
        forward = lambda x: tutorial_forward(model, x)  # noqa: E731
    if variant == "torch_ops_cl":  # ours_cl with torch's operators for every block (no convpool kernels)
        forward = _without_kernels(model)
    seconds = 0.0
    if variant == "compiled":
        forward = torch.compile(model)
    images = torch.randn(config.optim.batch_size, 1, 28, 28).contiguous(memory_format=fmt)
    labels = torch.randint(0, 10, (config.optim.batch_size,))
    optimizer = make_optimizer(model, config.optim)

    def step():
        loss = F.cross_entropy(forward(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # the first step compiles (for "compiled") and warms the allocator
    seconds = time.perf_counter() - start if variant == "compiled" else 0.0
    step()
    return step, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="seed")
    ap.add_argument("--variants", default="plain_nchw,plain_cl,ours_cl")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    # A whole run frees its data-loading buffers before training, and glibc then serves blocks up to
    # that size from its heap, keeping them for reuse. Without it, this script's steps faulted
    # fresh pages in every step, which a real run does not.
    warm = torch.empty(30 << 18)  # 30 MiB, freed: glibc's threshold for mmap rises to it
    del warm
    results = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        built = {v: build(v, args.recipe) for v in args.variants.split(",")}
        times = {v: [] for v in built}
        for _ in range(args.rounds):
            for variant, (step, _) in built.items():
                w, c = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    step()
                times[variant].append(((time.perf_counter() - w) / args.steps * 1e3,
                                       (time.process_time() - c) / args.steps * 1e3))
        for variant, rows in times.items():
            results.append({"variant": variant, "threads": threads,
                            "wall_ms": round(statistics.median(r[0] for r in rows), 2),
                            "cpu_ms": round(statistics.median(r[1] for r in rows), 2),
                            "compile_s": round(built[variant][1], 2)})
    print(f"recipe {args.recipe}, torch {torch.__version__}, {args.steps} steps x {args.rounds} rounds")
    print(f"{'variant':12s} {'threads':>7s} {'wall ms/step':>13s} {'CPU ms/step':>12s} {'compile s':>10s}")
    for r in results:
        print(f"{r['variant']:12s} {r['threads']:7d} {r['wall_ms']:13.1f} {r['cpu_ms']:12.1f} {r['compile_s']:10.1f}")
    print(json.dumps({"recipe": args.recipe, "torch": torch.__version__, "results": results}))


if __name__ == "__main__":
    main()
