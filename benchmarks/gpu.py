"""Every GPU measurement of the speed issue, in one run, written to one JSON file.

    PYTHONPATH=src python benchmarks/gpu.py [--device cuda] [--data-dir DIR] [--json benchmarks/results/gpu.json]
    PYTHONPATH=src python benchmarks/gpu.py --device cpu --tiny    # the same code, in seconds (tests)

Measured, the data already on the device, each run timed end to end (model creation, training
and the full test pass, synchronised), with a one-time warm-up run per setting reported apart:
  - fast recipe (2 epochs) and a 1-epoch variant: eager and CUDA graph, fp32 and bf16; then compiled
  - the seed recipe: eager and graph (the issue quotes 0.91 s eager on an H200)
  - the wide recipe (>= 0.995 target): bf16, augmentation, eager and graph
  - the models issue's `best` recipe (>= 0.9970 per model, >= 0.9975 for an ensemble): bf16, eager,
    3 seeds, then the ensemble of the 3 models (mean probability), with and without shifted views;
    its warm-up run is 1 epoch
  - last, the seed network's test-set inference time and single-image latency p50, and inductor's
    logits against eager's
Groups run in that order and the JSON is rewritten after each, so a run cut short keeps what it got;
a setting that fails is recorded with its error and the run goes on.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from digits.data import MNIST, Split, load_mnist, normalize
from digits.evaluate import evaluate_ensemble, predict_logits
from digits.models import create_model
from digits.ondevice import train_on_device
from digits.recipes import recipe

# (name, recipe, overrides, modes, bf16 options, seeds), the most wanted first: --budget-s may cut the rest
ENSEMBLES = {"best"}  # groups whose runs are also scored as one ensemble
SHORT_WARMUP = {"best"}  # groups whose warm-up run is 1 epoch (a full one costs as much as a timed run)
GROUPS = [
    ("fast", "fast", {}, ("eager", "graph"), (False, True), 5),
    ("fast-1epoch-bs512", "fast", {"epochs": 1, "batch_size": 512, "lr": 0.02}, ("graph",), (True,), 5),
    ("seed", "seed", {}, ("eager", "graph"), (False,), 3),
    ("wide", "wide", {}, ("eager", "graph"), (True,), 3),
    ("best", "best", {}, ("eager",), (True,), 3),
    ("fast-compiled", "fast", {}, ("compile", "compile+graph"), (True, False), 5),
]


def tiny_data(device) -> MNIST:
    """Random images, for checking the code path on a CPU in seconds (accuracy meaningless)."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        return Split(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g))
    return MNIST(split(256), split(0), split(128)).to(device)


def measure(name, recipe_name, overrides, mode, bf16, seeds, data, tiny) -> dict:
    def config(seed):
        c = recipe(recipe_name)
        for k, v in overrides.items():
            setattr(c.optim, k, v)
        if tiny:
            c.optim.epochs, c.optim.batch_size = 1, 64
            c.model.kwargs = {"width": 4} if recipe_name in ("wide", "best") else {}
        c.seed = seed
        return c

    def run(seed, epochs=None):
        c = config(seed)
        c.optim.epochs = epochs or c.optim.epochs
        return train_on_device(c, data, mode, bf16, backend(tiny))

    warm = run(100, 1 if name in SHORT_WARMUP else None)  # compile, autotune, allocator: reported apart
    runs = [run(s) for s in range(seeds)]
    row = {"group": name, "recipe": recipe_name, "overrides": overrides, "mode": mode, "bf16": bf16,
           "warmup_s": round(warm.seconds, 4), "graphed": runs[0].graphed, "steps": runs[0].steps,
           "seconds": [round(r.seconds, 4) for r in runs], "median_s": round(statistics.median(r.seconds for r in runs), 4),
           "test_accuracy": [r.test_accuracy for r in runs],
           "mean_test_accuracy": sum(r.test_accuracy for r in runs) / len(runs)}
    if name in ENSEMBLES:  # the mean of the models' probabilities; then also over shifted views
        models = [r.model for r in runs]
        for tta in (False, True):
            row[f"ensemble{'_tta' if tta else ''}_test_accuracy"] = evaluate_ensemble(
                models, data.test.images, data.test.labels, tta=tta).accuracy
    return row


def measure_or_error(name, recipe_name, overrides, mode, bf16, seeds, data, tiny) -> dict:
    """``measure``, or a row naming the error: the GPU session is one run, and one failing setting
    (a graph capture, a compiler) must not cost the groups after it."""
    try:
        return measure(name, recipe_name, overrides, mode, bf16, seeds, data, tiny)
    except Exception as error:  # recorded in the JSON, and the run goes on
        return {"group": name, "recipe": recipe_name, "mode": mode, "bf16": bf16,
                "error": f"{type(error).__name__}: {error}"}


def backend(tiny: bool) -> str:
    # a tiny check on a CPU skips the C++ compiler (inductor's compile took 17-44 s there)
    return "aot_eager" if tiny else "inductor"


def inference(data: MNIST, device, tiny: bool) -> dict:
    """The seed network: test pass time and images/s, single-image p50; inductor's logits vs eager."""
    torch.manual_seed(0)
    model = create_model("seed").to(device, memory_format=torch.channels_last).eval()
    images = data.test.images
    predict_logits(model, images, 1024, True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    predict_logits(model, images, 1024, True)
    sync()
    test_s = time.perf_counter() - start
    one = normalize(images[:1]).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(150 if tiny else 1100):
            t = time.perf_counter()
            model(one).argmax(1).item()
            times.append(time.perf_counter() - t)
    plain = create_model("fast").to(device).eval()
    compiled = torch.compile(plain, backend=backend(tiny))
    batch = normalize(images[:256])
    with torch.inference_mode():
        diff = (compiled(batch) - plain(batch)).abs().max().item()
    return {"test_images": len(images), "test_pass_s": round(test_s, 4),
            "test_images_per_s": round(len(images) / test_s), "single_image_p50_ms": round(
                statistics.median(times[100:]) * 1e3, 4), "single_image_calls": len(times) - 100,
            "inductor_vs_eager_max_logit_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/gpu.json"))
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="MNIST's folder (default: $DIGITS_DATA_DIR, then the user cache; never downloads)")
    ap.add_argument("--tiny", action="store_true", help="random tiny data, 1 epoch, 1 seed: a code-path check")
    ap.add_argument("--groups", default=",".join(g[0] for g in GROUPS))
    ap.add_argument("--budget-s", type=float, default=480, help="skip the groups left after this many seconds")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.tiny:  # one thread: on the shared 2-core machine a second one mostly waits
        torch.set_num_threads(1)
    data = tiny_data(device) if args.tiny else load_mnist(args.data_dir, download=False).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    result = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "tiny": args.tiny, "inference": None, "runs": [], "skipped": []}
    start = time.perf_counter()

    def save():
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")

    for name, recipe_name, overrides, modes, bf16s, seeds in GROUPS:
        if name not in args.groups.split(","):
            continue
        for mode in modes:
            for bf16 in bf16s:
                if time.perf_counter() - start > args.budget_s:
                    result["skipped"].append(f"{name} {mode} bf16={bf16}")
                    continue
                row = measure_or_error(name, recipe_name, overrides, mode, bf16, 1 if args.tiny else seeds, data,
                                       args.tiny)
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                save()
    try:  # last: its compile must not delay the groups, nor its failure cost them
        result["inference"] = inference(data, device, args.tiny)
    except Exception as error:  # recorded in the JSON
        result["inference"] = {"error": f"{type(error).__name__}: {error}"}
    save()
    print(f"wrote {args.json} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
