"""Load test of `digits serve` on loopback: N image uploads at concurrency C, status counts,
latency percentiles, throughput and the server's memory (RSS) over the run.

Starts the server as a child process, waits for /health, warms up, then sends MNIST test digits
as PNG uploads (multipart POST /predict) and prints one JSON object. The client shares the machine's
cores with the server, so the figures are for both together on this machine.

    PYTHONPATH=src python benchmarks/load_test.py --checkpoint tests/data/seed.pt \
        --requests 5000 --concurrency 32 --out benchmarks/results/load_test.json
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def payloads(data_dir: str | None, count: int = 200) -> list[bytes]:
    """PNG files of MNIST test digits, dark ink on white as a person would upload them."""
    from digits.data import load_mnist

    images = load_mnist(data_dir, val_size=0, download=False).test.images[:count, 0].numpy()
    out = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(255 - image).resize((140, 140), Image.Resampling.BILINEAR).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def start_server(checkpoint: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "digits", "serve", checkpoint, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not answer /health within 120 s")


async def hammer(url: str, bodies: list[bytes], requests: int, concurrency: int) -> tuple[list, dict]:
    latencies, statuses = [], {}
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def worker():
            for i in counter:
                start = time.perf_counter()
                try:
                    r = await client.post(url, files={"file": ("digit.png", bodies[i % len(bodies)], "image/png")})
                    code = r.status_code
                except httpx.TransportError as e:
                    code = type(e).__name__
                latencies.append(time.perf_counter() - start)
                statuses[code] = statuses.get(code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


async def sample_rss(pid: int, every: float, out: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def measure(port: int, pid: int, bodies: list[bytes], requests: int, concurrency: int) -> dict:
    url = f"http://127.0.0.1:{port}/predict"
    await hammer(url, bodies, 200, concurrency)  # warm-up: thread pool, allocator, first inferences
    rss, stop = [], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, 0.25, rss, stop))
    start = time.perf_counter()
    latencies, statuses = await hammer(url, bodies, requests, concurrency)
    seconds = time.perf_counter() - start
    stop.set()
    await sampler
    ms = sorted(1000 * x for x in latencies)
    q = statistics.quantiles(ms, n=100)
    fifth = max(1, len(rss) // 5)
    return {"requests": requests, "concurrency": concurrency, "statuses": {str(k): v for k, v in statuses.items()},
            "server_errors_5xx": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500),
            "seconds": round(seconds, 2), "requests_per_second": round(requests / seconds, 1),
            "latency_ms": {"p50": round(q[49], 1), "p90": round(q[89], 1), "p99": round(q[98], 1),
                           "max": round(ms[-1], 1)},
            "rss_mb": {"after_warmup": round(rss[0], 1), "first_fifth_mean": round(statistics.mean(rss[:fifth]), 1),
                       "last_fifth_mean": round(statistics.mean(rss[-fifth:]), 1), "max": round(max(rss), 1),
                       "samples": len(rss)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt (or model.onnx) to serve")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR"), help="MNIST folder")
    p.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args()
    bodies = payloads(args.data_dir)
    port = free_port()
    server = start_server(args.checkpoint, port)
    try:
        result = asyncio.run(measure(port, server.pid, bodies, args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait(30)
    result.update(checkpoint=args.checkpoint, cpu_count=os.cpu_count(), python=sys.version.split()[0],
                  payload_bytes_mean=round(float(np.mean([len(b) for b in bodies]))),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
