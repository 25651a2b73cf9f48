"""Ray Data extraction against graft's single-process path on one machine, whole processes.

Both run ``graft extract`` in a fresh process on an empty cache (so each converts the model
once), over the same dataset: ``--engine auto`` (one process, decode threads + OpenVINO) and
``--engine ray`` (a local Ray instance: decode tasks + one model actor, parquet output). Prints
images/s of each and the ratio; results in ``bench/results/ray_vs_local.json``.

    .venv/bin/python bench/ray_vs_local.py [--data ../shared/data/brain_mri] [--actors 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "brain_mri"


def timed(args: list[str]) -> float:
    env = {**os.environ, "GRAFT_CACHE_DIR": tempfile.mkdtemp(prefix="graft-bench-")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "graft", *args], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--actors", type=int, default=1)
    args = parser.parse_args()
    images = sum(1 for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for path in args.data.rglob("*"):  # warm the page cache for both
        if path.is_file():
            path.read_bytes()
    out = Path(tempfile.mkdtemp(prefix="graft-bench-out-"))
    local = timed(["extract", str(args.data), "--out", str(out / "local.safetensors")])
    ray = timed(
        [
            "extract",
            str(args.data),
            "--engine",
            "ray",
            "--actors",
            str(args.actors),
            "--out",
            str(out / "ray"),
        ]
    )
    results = {
        "images": images,
        "local_seconds": local,
        "ray_seconds": ray,
        "local_img_s": images / local,
        "ray_img_s": images / ray,
        "ray_over_local": local / ray,
        "actors": args.actors,
        "cores": os.cpu_count(),
    }
    print(
        f"{images} images: single process {results['local_img_s']:.1f} img/s ({local:.0f} s), "
        f"Ray {results['ray_img_s']:.1f} img/s ({ray:.0f} s, {args.actors} actor): "
        f"Ray at {results['ray_over_local']:.2f}x the single process"
    )
    target = HERE / "results" / "ray_vs_local.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
