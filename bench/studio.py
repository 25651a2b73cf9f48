"""graft studio under load: a 10,000-image folder, and /health while a fine-tune runs.

Prints, in one run:
- opening (reading and validating) a folder of N small images, and one page of the image list;
- a page of 48 thumbnails, first (decoded and cached) and again (from the cache);
- ``/health`` round trips while idle and while a short fine-tune trains (median and largest).

Usage:
    .venv/bin/python bench/studio.py [--images 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from graft.studio import create_studio_app
from loopback import served
from test_studio import _solar_cells


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = "ab"[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / label / f"{i:05d}.png")
    return root


def _timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> float:
    start = time.perf_counter()
    response = client.request(method, url, timeout=600, **kwargs)  # type: ignore[arg-type]
    response.raise_for_status()
    return time.perf_counter() - start


def _health(client: httpx.Client, url: str, count: int, pause: float) -> list[float]:
    times = []
    for _ in range(count):
        times.append(_timed(client, "GET", url + "/health") * 1000)
        time.sleep(pause)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        big = _folder(work / "big", args.images)
        cells = _solar_cells(work / "cells")
        app = create_studio_app([big, cells], workspace=work / "studio")
        with served(app) as url, httpx.Client() as client:
            opened = _timed(client, "POST", url + "/api/open", json={"path": str(big)})
            listed = _timed(client, "GET", url + "/api/images", params={"data": str(big)})
            page = client.get(url + "/api/images", params={"data": str(big), "page": 100}).json()
            paths = [image["path"] for image in page["images"]]

            def thumbnails() -> float:
                start = time.perf_counter()
                for path in paths:
                    client.get(url + "/api/thumb", params={"path": path}).raise_for_status()
                return time.perf_counter() - start

            first, again = thumbnails(), thumbnails()
            print(
                f"{args.images} images: open and validate {opened:.1f} s; a page of the list "
                f"{listed * 1000:.0f} ms; {len(paths)} thumbnails {first * 1000:.0f} ms first, "
                f"{again * 1000:.0f} ms cached ({first / again:.1f}x)"
            )
            idle = _health(client, url, 30, 0.05)
            client.post(url + "/api/open", json={"path": str(cells)}).raise_for_status()
            job = client.post(
                url + "/api/train",
                json={
                    "data": str(cells),
                    "strategy": "finetune",
                    "options": {"epochs": 3, "freeze_epochs": 1, "image_size": 160},
                },
            ).json()["job"]
            busy: list[float] = []
            done = threading.Event()

            def watch() -> None:
                while client.get(url + "/api/jobs").json()[-1]["status"] in ("queued", "running"):
                    time.sleep(0.5)
                done.set()

            threading.Thread(target=watch, daemon=True).start()
            while not done.is_set():
                busy += _health(client, url, 1, 0.1)
            status = client.get(url + "/api/jobs").json()[-1]["status"]
            print(
                f"/health idle: median {statistics.median(idle):.1f} ms, largest "
                f"{max(idle):.1f} ms; during the fine-tune (job {job}, {status}, "
                f"{len(busy)} requests): median {statistics.median(busy):.1f} ms, largest "
                f"{max(busy):.1f} ms (target: under 200 ms)"
            )


if __name__ == "__main__":
    main()
