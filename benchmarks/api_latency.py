"""Single-image latency of POST /predict through a real `digits serve` on loopback.

One client sends requests one after another over a kept-alive connection (as the drawing page
does) and times each from sending to the parsed JSON reply. Inputs: the drawing page's PNG
(a 320x320 canvas), a phone-sized JPEG photo (1536x2048), and 28x28 JSON pixels (no image decoding).

    PYTHONPATH=src python benchmarks/api_latency.py runs/seed-0/checkpoint.pt [model.onnx ...]

Writes benchmarks/results/api_latency.json (or --out FILE) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results" / "api_latency.json"


def _digit() -> np.ndarray:
    from digits.data import load_mnist

    return load_mnist(val_size=0, download=False).test.images[0, 0].numpy()  # a 7


def canvas_png(digit: np.ndarray) -> bytes:
    big = Image.fromarray(255 - digit).resize((320, 320), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "PNG")
    return buf.getvalue()


def photo_jpeg(digit: np.ndarray) -> bytes:
    page = np.full((2048, 1536), 235, np.float32)
    big = np.asarray(Image.fromarray(digit).resize((700, 700), Image.Resampling.BICUBIC), np.float32)
    page[600:1300, 500:1200] -= big * 0.8
    buf = io.BytesIO()
    Image.fromarray(page.astype(np.uint8)).convert("RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue()


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def time_requests(port: int, body: bytes, content_type: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for i in range(n + 10):  # the first 10 warm up
        start = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": content_type})
        reply = conn.getresponse()
        payload = json.loads(reply.read())
        elapsed = time.perf_counter() - start
        assert reply.status == 200, payload
        if i >= 10:
            times.append(elapsed * 1000)
    conn.close()
    return times


def cpu_times(model: str, images: dict[str, bytes], n: int = 100) -> None:
    """CPU time (this process, one thread) of preprocessing and of inference, per image."""
    from digits.predictor import load_predictor
    from digits.preprocess import preprocess

    predictor = load_predictor(model, threads=1)
    for name, data in images.items():
        pixels = preprocess(data)
        start = time.process_time()
        for _ in range(n):
            preprocess(data)
        middle = time.process_time()
        for _ in range(n):
            predictor.probs(pixels)
        end = time.process_time()
        print(f"{Path(model).name} | {name}: preprocessing {1000 * (middle - start) / n:.2f} ms CPU, "
              f"inference {1000 * (end - middle) / n:.2f} ms CPU")


def serve(model: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "digits", "serve", model, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"digits serve {model} did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="checkpoint.pt or model.onnx files")
    p.add_argument("-n", type=int, default=300, help="timed requests per input (default 300)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    p.add_argument("--cpu", action="store_true", help="only measure CPU time per image, in this process")
    args = p.parse_args()
    digit = _digit()
    if args.cpu:
        for model in args.models:
            cpu_times(model, {"drawing page PNG 320x320": canvas_png(digit), "photo JPEG 1536x2048":
                              photo_jpeg(digit)})
        return
    inputs = {"drawing page PNG 320x320": multipart(canvas_png(digit), "drawing.png"),
              "photo JPEG 1536x2048": multipart(photo_jpeg(digit), "photo.jpg"),
              "JSON 28x28 pixels": (json.dumps({"pixels": digit.tolist()}).encode(), "application/json")}
    rows = []
    for model in args.models:
        proc, port = serve(model)
        try:
            for name, (body, kind) in inputs.items():
                t = np.array(time_requests(port, body, kind, args.n))
                rows.append({"model": model, "input": name, "bytes": len(body), "n": args.n,
                             "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
                             "p99_ms": float(np.percentile(t, 99))})
                print(f"{model} | {name}: p50 {rows[-1]['p50_ms']:.2f} ms, p90 {rows[-1]['p90_ms']:.2f} ms",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait()
    import torch

    summary = {"date": str(date.today()), "torch": torch.__version__, "machine": platform.machine(),
               "cpus": os.cpu_count(), "load_average_after": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| model | input | p50 | p90 | p99 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['model']).name} | {r['input']} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
              f"{r['p99_ms']:.2f} ms |")
    print(f"load average after: {summary['load_average_after']}")


if __name__ == "__main__":
    main()
