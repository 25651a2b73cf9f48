"""A bounded load test of ``graft serve`` on loopback: latency percentiles, throughput, memory.

Starts the service for a run on 127.0.0.1 in a child process (with ``graft serve``'s default
limits), sends ``--requests`` single-image POST /predict requests with ``--concurrency`` in
flight, then stops everything by itself. Prints (and returns) errors, p50/p99 latency, requests
per second, and the server's resident memory before and after.

With ``--abuse``, the same good requests are sent twice: once alone (the plain run), then again
while abusers hit the same server: garbage bytes and an EPS named ``.png``, pixel floods
(solid-colour 9000 x 9000 PNGs, 81 megapixels each in a few hundred KB), bodies of 20,000 empty
parts, oversized chunked bodies, and slow senders that trickle a body byte by byte. It prints
the good requests' errors and p50/p99 in both runs, the ratio of the p99s, what the abusers got
back, and the server's peak resident memory (VmHWM). Every loop is bounded in count and time.

    .venv/bin/python bench/serve_load.py RUN_DIR --requests 2000 --concurrency 16 [--image PATH]
    .venv/bin/python bench/serve_load.py RUN_DIR --abuse --requests 600 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

SERVER = """
import sys, uvicorn
from graft.serve import ServeOptions, create_app
options = ServeOptions(backend=sys.argv[3], max_queue=int(sys.argv[4]))
app = create_app(sys.argv[1], options)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            limit_concurrency=options.max_connections, timeout_keep_alive=5)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its peak so far (``VmHWM``) of a process, in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
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


@contextlib.contextmanager
def serve_in_child(run_dir: Path, backend: str, max_queue: int) -> Iterator[tuple[str, int]]:
    """Start the service in a child process; yield its URL and pid; stop it at the end."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(run_dir), str(port), backend, str(max_queue)],
        env=os.environ.copy(),
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
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def _figures(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    milliseconds = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "requests_per_s": len(latencies) / elapsed,
    }


def load_test(
    run_dir: Path,
    *,
    requests: int = 2000,
    concurrency: int = 16,
    image: Path | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Run the load test; return its figures."""
    with serve_in_child(run_dir, backend, max_queue=4096) as (base, pid):
        rss_before = rss_mb(pid)
        payload = _image(image)
        start = time.perf_counter()
        latencies, errors = asyncio.run(_hammer(base + "/predict", payload, requests, concurrency))
        elapsed = time.perf_counter() - start
        rss_after = rss_mb(pid)
    return {
        **_figures(latencies, errors, elapsed),
        "concurrency": concurrency,
        "server_rss_mb_before": rss_before,
        "server_rss_mb_after": rss_after,
    }


# -- abuse -----------------------------------------------------------------------------------


def flood_png() -> bytes:
    """A solid-colour 9000 x 9000 PNG: 81 megapixels (243 MB decoded) in a few hundred KB."""
    buffer = io.BytesIO()
    Image.new("RGB", (9000, 9000), (30, 160, 90)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _garbage_bodies() -> list[tuple[str, bytes]]:
    eps = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(eps, format="EPS")
    rng = np.random.default_rng(1)
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(png, format="PNG")
    return [
        ("noise.png", rng.integers(0, 255, 50_000, dtype=np.uint8).tobytes()),
        ("x.png", eps.getvalue()),
        ("cut.png", png.getvalue()[:100]),
        ("empty.jpg", b""),
    ]


def _many_parts() -> bytes:
    part = '--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'
    return (part * 20_000 + "--b--\r\n").encode()


async def _abusers(url: str, stop: asyncio.Event, seconds: float) -> dict[str, Counter[str]]:
    """Send abuse until ``stop`` is set or ``seconds`` pass; return the answers by kind."""
    seen: dict[str, Counter[str]] = {
        kind: Counter() for kind in ("garbage", "flood", "parts", "oversize", "slow")
    }
    flood, garbage, parts = flood_png(), _garbage_bodies(), _many_parts()
    end = time.monotonic() + seconds
    host, port = url.removeprefix("http://").split("/")[0].split(":")

    def note(kind: str, outcome: str) -> None:
        seen[kind][outcome] += 1

    async def loop(kind: str, send: Any, pause: float) -> None:
        async with httpx.AsyncClient(timeout=60.0) as client:
            while not stop.is_set() and time.monotonic() < end:
                try:
                    note(kind, str(await send(client)))
                except httpx.HTTPError as err:
                    note(kind, type(err).__name__)
                await asyncio.sleep(pause)

    async def send_garbage(client: httpx.AsyncClient) -> int:
        name, body = garbage[seen["garbage"].total() % len(garbage)]
        response = await client.post(url, files={"file": (name, body, "image/png")})
        return response.status_code

    async def send_flood(client: httpx.AsyncClient) -> int:
        response = await client.post(url, files={"file": ("flood.png", flood, "image/png")})
        return response.status_code

    async def send_parts(client: httpx.AsyncClient) -> int:
        headers = {"content-type": "multipart/form-data; boundary=b"}
        return (await client.post(url, content=parts, headers=headers)).status_code

    async def send_oversize(client: httpx.AsyncClient) -> int:
        async def body() -> AsyncIterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\n'
            for _ in range(320):  # 20 MB, chunked (no Content-Length)
                yield b"\0" * 65536

        headers = {"content-type": "multipart/form-data; boundary=b"}
        return (await client.post(url, content=body(), headers=headers)).status_code

    async def slow_sender() -> None:
        while not stop.is_set() and time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
                    b'--b\r\nContent-Disposition: form-data; name="f"; filename="s.png"\r\n\r\n'
                )
                await writer.drain()
                answer = b""
                for _ in range(120):  # a valid byte every half second, for at most a minute
                    if stop.is_set():
                        break
                    writer.write(b"\0")
                    await writer.drain()
                    try:
                        answer = await asyncio.wait_for(reader.read(64), 0.5)
                    except TimeoutError:
                        continue
                    break
                note("slow", answer[9:12].decode("ascii", "replace") or "no answer")
                writer.close()
            except OSError as err:
                note("slow", type(err).__name__)

    await asyncio.gather(
        loop("garbage", send_garbage, 0.05),
        loop("garbage", send_garbage, 0.05),
        loop("flood", send_flood, 0.0),
        loop("flood", send_flood, 0.0),
        loop("flood", send_flood, 0.0),
        loop("flood", send_flood, 0.0),
        loop("parts", send_parts, 0.1),
        loop("oversize", send_oversize, 0.2),
        *(slow_sender() for _ in range(8)),
    )
    return seen


async def _under_abuse(
    url: str, payload: bytes, requests: int, concurrency: int, seconds: float
) -> tuple[list[float], int, dict[str, Counter[str]]]:
    stop = asyncio.Event()
    abuse = asyncio.create_task(_abusers(url, stop, seconds))
    await asyncio.sleep(1.0)  # let the abuse start first
    latencies, errors = await _hammer(url, payload, requests, concurrency)
    stop.set()
    return latencies, errors, await abuse


def abuse_test(
    run_dir: Path,
    *,
    requests: int = 600,
    concurrency: int = 8,
    image: Path | None = None,
    backend: str = "auto",
    seconds: float = 300.0,
) -> dict[str, Any]:
    """The plain run, then the same good requests under abuse, on one fresh server each."""
    payload = _image(image)
    with serve_in_child(run_dir, backend, max_queue=256) as (base, pid):
        start = time.perf_counter()
        latencies, errors = asyncio.run(_hammer(base + "/predict", payload, requests, concurrency))
        plain = {**_figures(latencies, errors, time.perf_counter() - start)}
        plain["server_peak_rss_mb"] = rss_mb(pid, "VmHWM")
    with serve_in_child(run_dir, backend, max_queue=256) as (base, pid):
        idle = rss_mb(pid, "VmHWM")
        start = time.perf_counter()
        latencies, errors, seen = asyncio.run(
            _under_abuse(base + "/predict", payload, requests, concurrency, seconds)
        )
        abused = {**_figures(latencies, errors, time.perf_counter() - start)}
        abused["server_peak_rss_mb"] = rss_mb(pid, "VmHWM")
        abused["server_peak_rss_mb_before_abuse"] = idle
        alive = httpx.get(base + "/health", timeout=5).status_code == 200
    return {
        "concurrency": concurrency,
        "plain": plain,
        "abuse": abused,
        "p99_ratio": abused["p99_ms"] / plain["p99_ms"],
        "abusers": {kind: dict(counter) for kind, counter in seen.items()},
        "healthy_after": alive,
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
    parser.add_argument("--abuse", action="store_true", help="plain run, then under abuse")
    args = parser.parse_args()
    test = abuse_test if args.abuse else load_test
    report = test(
        args.run_dir,
        requests=args.requests,
        concurrency=args.concurrency,
        image=args.image,
        backend=args.backend,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
