"""Two facts the inference code relies on, measured: a single-image forward pass of the seed
network with 1 torch thread against the default, and ONNX export time with the TorchScript-based
exporter against the dynamo one.

    PYTHONPATH=src python benchmarks/inference_facts.py runs/seed-0/checkpoint.pt
"""
import argparse
import os
import subprocess
import sys
import tempfile

FORWARD = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]) or torch.get_num_threads())
from digits.checkpoint import load_checkpoint
model, _ = load_checkpoint(sys.argv[2])
x = torch.zeros(1, 1, 28, 28)
with torch.inference_mode():
    for _ in range(20):
        model(x)
    start = time.perf_counter()
    for _ in range(200):
        model(x)
print(f"{torch.get_num_threads()} thread(s): {(time.perf_counter() - start) / 200 * 1000:.2f} ms per image")
"""

EXPORT = """
import sys, time, torch, warnings
warnings.simplefilter("ignore")
from digits.export import Normalized
from digits.checkpoint import load_checkpoint
model, _ = load_checkpoint(sys.argv[2])
x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
dynamo = sys.argv[1] == "dynamo"
start = time.perf_counter()
kw = dict(dynamic_shapes={"images": {0: torch.export.Dim("batch")}}) if dynamo else \\
    dict(dynamic_axes={"images": {0: "batch"}})
torch.onnx.export(Normalized(model).eval(), (x,), sys.argv[3], input_names=["images"], dynamo=dynamo,
                  verbose=False, **kw)
print(f"{sys.argv[1]} exporter: {time.perf_counter() - start:.1f} s")
"""

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    ckpt = p.parse_args().checkpoint
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for threads in ("1", "0"):
        subprocess.run([sys.executable, "-c", FORWARD, threads, ckpt], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("torchscript", "dynamo"):
            done = subprocess.run([sys.executable, "-c", EXPORT, kind, ckpt, f"{tmp}/m.onnx"], check=True,
                                  capture_output=True, text=True)
            print(done.stdout.strip().splitlines()[-1])
