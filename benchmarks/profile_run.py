"""Where the time of `digits run` goes: imports, data, training steps, validation, test pass,
checkpoints, TensorBoard, figures, report; wall and CPU seconds per phase, one process.

    PYTHONPATH=src python benchmarks/profile_run.py [--threads 1] [--recipe seed] [--ops 20]

--ops N also profiles N training steps with torch.profiler and prints the top operators. CPU
seconds include waited-for child processes (the figures are drawn in two processes at once).
Threads are pinned to cores where the `digits` command would pin them (digits/affinity.py).
Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict

T0 = (time.perf_counter(), time.process_time())  # no children yet: _cpu() == process_time() here
PHASES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])


def _add(name: str, wall: float, cpu: float) -> None:
    PHASES[name][0] += wall
    PHASES[name][1] += cpu


def _cpu() -> float:
    """This process's CPU seconds plus those of its children that have been waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        w, c = time.perf_counter(), _cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - w, _cpu() - c)
    return wrapper


def _import(name: str) -> None:
    w, c = time.perf_counter(), time.process_time()
    __import__(name)
    _add(f"import {name}", time.perf_counter() - w, time.process_time() - c)


def instrument() -> None:
    """Wrap the pipeline's phases (the functions it calls by name) with timers."""
    import importlib

    pipeline, runfolder, train, resume = (importlib.import_module(f"digits.{m}")
                                          for m in ("pipeline", "runfolder", "train", "resume"))

    pipeline.load_mnist = timed("data: read + split", pipeline.load_mnist)
    pipeline.evaluate = timed("test pass (10,000 images)", pipeline.evaluate)
    pipeline.draw_figures = timed("figures (import matplotlib + 5 PNGs)", pipeline.draw_figures)
    pipeline._open_writer = timed("TensorBoard writer (import + open)", pipeline._open_writer)
    for name in ("write_json", "write_text", "render_report"):
        setattr(pipeline, name, timed("config.json, metrics.json, report.md", getattr(pipeline, name)))
    runfolder.write_json = timed("config.json, metrics.json, report.md", runfolder.write_json)  # config.json
    train.evaluate = timed("validation passes", train.evaluate)
    resume.save_checkpoint = timed("checkpoints", resume.save_checkpoint)
    train._log_epoch = timed("TensorBoard scalars", train._log_epoch)


def op_profile(recipe: str, steps: int, threads: int) -> str:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from digits.models import create_model
    from digits.optim import make_optimizer
    from digits.recipes import recipe as get_recipe

    config = get_recipe(recipe)
    torch.set_num_threads(threads)
    model = create_model(config.model.name, **config.model.kwargs).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optim)
    images = torch.randn(config.optim.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (config.optim.batch_size,))

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=45)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="seed")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", type=int, default=0, help="also profile this many training steps by operator")
    args = ap.parse_args()
    from digits.affinity import pin_threads

    pin_threads(args.threads)  # as the `digits` command does, before torch is imported
    for name in ("torch", "digits.pipeline", "tqdm"):
        _import(name)
    import torch

    from digits.pipeline import run
    from digits.recipes import recipe

    instrument()
    config = recipe(args.recipe)
    config.seed, config.threads, config.progress = args.seed, args.threads, False
    with tempfile.TemporaryDirectory() as out:
        w, c = time.perf_counter(), _cpu()
        result = run(config, out)
        _add("run() in all", time.perf_counter() - w, _cpu() - c)
    m = result.metrics
    inner = sum(v[0] for k, v in PHASES.items() if not k.startswith(("import", "run()")))
    _add("training steps + set-up (rest of run)", PHASES["run() in all"][0] - inner, 0.0)
    PHASES["training steps + set-up (rest of run)"][1] = PHASES["run() in all"][1] - sum(
        v[1] for k, v in PHASES.items() if not k.startswith(("import", "run()", "training steps")))
    total = (time.perf_counter() - T0[0], _cpu() - T0[1])
    avoided = "torch._dynamo" not in sys.modules
    if avoided:  # what torch.optim's optimizers would have cost (digits.optimizers avoids it)
        _import("torch._dynamo")
    print(f"digits run --recipe {args.recipe} --threads {args.threads} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): test accuracy {m['test_accuracy']:.4f}")
    print(f"{'phase':42s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (wall, cpu) in PHASES.items():
        if name == "import torch._dynamo":
            continue
        print(f"{name:42s} {wall:8.2f} {cpu:8.2f}")
    print(f"{'whole process after interpreter start':42s} {total[0]:8.2f} {total[1]:8.2f}")
    if avoided:
        print(f"{'(not in the run) import torch._dynamo':42s} {PHASES['import torch._dynamo'][0]:8.2f} "
              f"{PHASES['import torch._dynamo'][1]:8.2f}")
    if args.ops:
        print(op_profile(args.recipe, args.ops, torch.get_num_threads()))
    print(json.dumps({"phases": {k: {"wall_s": round(v[0], 3), "cpu_s": round(v[1], 3)} for k, v in PHASES.items()},
                      "total_wall_s": round(total[0], 3), "total_cpu_s": round(total[1], 3),
                      "test_accuracy": m["test_accuracy"], "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    sys.exit(main())
