"""A bounded load test of ``graft serve`` on loopback: latency percentiles, throughput, memory.

Starts the service for a run on 127.0.0.1 in a child process, sends ``--requests`` single-image
POST /predict requests with ``--concurrency`` in flight, then stops everything by itself. Prints
(and returns) errors, p50/p99 latency, requests per second, and the server's resident memory
before and after.

    .venv/bin/python bench/serve_load.py RUN_DIR --requests 2000 --concurrency 16 [--image PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

SERVER = """
import sys, uvicorn
from graft.serve import ServeOptions, create_app
app = create_app(sys.argv[1], ServeOptions(backend=sys.argv[3], max_queue=4096))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _image(path: Path | None) -> bytes:
    if path is not None:
        return path.read_bytes()
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def _hammer(
    url: str, payload: bytes, requests: int, concurrency: int
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                try:
                    response = await client.post(
                        url, files={"file": ("load.jpg", payload, "image/jpeg")}
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def load_test(
    run_dir: Path,
    *,
    requests: int = 2000,
    concurrency: int = 16,
    image: Path | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Run the load test; return its figures."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(run_dir), str(port), backend], env=os.environ.copy()
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        rss_before = _rss_mb(server.pid)
        payload = _image(image)
        start = time.perf_counter()
        latencies, errors = asyncio.run(_hammer(base + "/predict", payload, requests, concurrency))
        elapsed = time.perf_counter() - start
        rss_after = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    milliseconds = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "errors": errors,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "requests_per_s": len(latencies) / elapsed,
        "server_rss_mb_before": rss_before,
        "server_rss_mb_after": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    report = load_test(
        args.run_dir,
        requests=args.requests,
        concurrency=args.concurrency,
        image=args.image,
        backend=args.backend,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
