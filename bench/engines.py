"""Feature-extraction speed on this machine: engines, precisions, pipelines, and scaling.

Everything is measured in one run, so the ratios hold even on a noisy machine:

1. the machine's fp32 matrix-multiply peak (GFLOP/s, PyTorch) and the backbone's GFLOP/image;
2. model only (decoded pixels already in memory, batch 32): every engine at every precision it
   runs, and the default engine at several batch sizes;
3. end to end over ``cats_and_dogs_filtered`` (decode, resize, crop, forward; no cache):
   graft's default (``--precision auto``: the precision it chooses on this machine), graft at
   fp32, int8 and bf16, graft on the torch engine; the seeds' naive loop (one image at a time:
   load, resize, preprocess, predict, PyTorch eager); and a plain batched PyTorch pipeline
   (torchvision ``ImageFolder``, ``DataLoader`` with 2 workers, batch 32, eager model);
   then the first extraction of the whole folder as a user runs it (``extract_dataset``, empty
   cache, engine compiled from scratch), auto against fp32, so the precision check's and the
   compile's one-time costs are in the figure;
4. the linear-probe accuracy of int8 and bf16 features against fp32 (train split fits,
   validation scores), and of ``graft train``'s default (auto) against ``--precision fp32`` on
   four datasets (cats_and_dogs_filtered, potato_disease, brain_mri, ELPV);
5. scaling: 300, 3,000 and 30,000 images (the set repeated), time per image and peak memory.

The page cache is warmed first (every file read once), so all pipelines see the same disk.
Results go to ``bench/results/engines.json`` and the table in ``bench/README.md``.

    .venv/bin/python bench/engines.py [--data ../shared/data/cats_and_dogs_filtered] [--quick]
        [--skip-datasets]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from readme import replace_section

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "cats_and_dogs_filtered"
BACKBONE = "efficientnet_lite0.in1k"


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Sample RSS every 50 ms while the block runs; yields a dict that gets ``peak_mb``."""
    result = {"start_mb": rss_mb(), "peak_mb": rss_mb()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            result["peak_mb"] = max(result["peak_mb"], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_mb"] = max(result["peak_mb"], rss_mb())


def matmul_peak() -> float:
    """Best fp32 GFLOP/s of a 2048 x 2048 matrix multiply over a few tries."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


def model_gflops(network: Any, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros((1, 3, size, size), dtype=torch.uint8))
    return counter.get_total_flops() / 1e9


def rate(run: Callable[[], int], repeat: int = 1) -> float:
    """Images per second of ``run`` (which returns the images it processed)."""
    run()  # warm-up
    start, images = time.perf_counter(), 0
    for _ in range(repeat):
        images += run()
    return images / (time.perf_counter() - start)


def model_only(pixels: np.ndarray, calibration: np.ndarray) -> dict[str, float]:
    """Images/s of each engine x precision on in-memory pixels (batch 32)."""
    from graft.engines import create_engine
    from graft.engines.base import SUPPORTS, available_engines
    from graft.errors import ConfigError
    from graft.features.layers import feature_module
    from graft.zoo.model import create_model

    results: dict[str, float] = {}
    for engine in available_engines():
        for precision in SUPPORTS[engine]:
            network = feature_module(create_model(BACKBONE))
            try:
                runner = create_engine(
                    network,
                    input_size=224,
                    engine=engine,
                    precision=precision,
                    calibration=lambda: calibration,
                )
            except ConfigError as err:
                print(f"  {engine} {precision}: skipped ({err})")
                continue
            batch = pixels[:32]
            value = rate(lambda runner=runner, batch=batch: len(runner(batch)), repeat=6)
            results[f"{engine} {precision}"] = value
            print(f"  model only, {engine:<12} {precision}: {value:7.1f} img/s", flush=True)
    return results


def batch_sizes(pixels: np.ndarray) -> dict[int, float]:
    """The default engine (fp32) at several batch sizes: how the default batch was chosen."""
    from graft.features.extract import FeatureSpec, feature_engine

    runner = feature_engine(FeatureSpec.create(BACKBONE))
    results = {}
    for size in (1, 8, 16, 32, 64):
        batch = pixels[:size]
        repeat = max(2, 192 // size)
        results[size] = rate(lambda batch=batch: len(runner(batch)), repeat=repeat)
        print(f"  model only, default engine, batch {size:>2}: {results[size]:7.1f} img/s")
    return results


def graft_stream(files: list[Path], precision: str = "fp32", engine: str = "auto") -> float:
    """graft's own pipeline, no cache: images/s after the engine is built (built first)."""
    from graft.features.extract import FeatureSpec, feature_engine, stream_features

    spec = FeatureSpec.create(BACKBONE, precision=precision)
    if precision == "int8":
        from graft.features.extract import calibrate

        train = [f for f in files if "train" in f.parts]
        spec = calibrate(spec, train)
    runner = feature_engine(spec, engine=engine)
    start, images = time.perf_counter(), 0
    for paths, _, _ in stream_features(files, spec, engine=runner):
        images += len(paths)
    return images / (time.perf_counter() - start)


def first_extraction(folder: Path, precision: str) -> tuple[float, str]:
    """Seconds of a first ``extract_dataset`` of ``folder`` (fresh cache and compiled models),
    and the precision it used."""
    from graft.features.dataset import extract_dataset
    from graft.features.extract import FeatureSpec

    previous = os.environ["GRAFT_CACHE_DIR"]
    os.environ["GRAFT_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"graft-bench-{precision}-")
    try:
        start = time.perf_counter()
        result = extract_dataset(folder, [FeatureSpec.create(BACKBONE)], precision=precision)
        seconds = time.perf_counter() - start
    finally:
        os.environ["GRAFT_CACHE_DIR"] = previous
    return seconds, result.specs[0].precision


def dataset_probes(shared: Path) -> dict[str, dict[str, Any]]:
    """``graft train``'s linear probe, default (auto) against ``--precision fp32``, per dataset."""
    from graft.data.prepare import DataOptions
    from graft.datasets import elpv
    from graft.training import LinearOptions, train_linear

    sets: dict[str, tuple[Any, DataOptions, str]] = {
        "cats_and_dogs_filtered": (shared / "cats_and_dogs_filtered", DataOptions(), "val"),
        "potato_disease": (shared / "potato_disease", DataOptions(), "test"),
        "brain_mri": (shared / "brain_mri", DataOptions(), "test"),
        "ELPV": (elpv("binary"), DataOptions(val=0.0, test=0.25, seed=0), "test"),
    }
    results = {}
    scratch = Path(tempfile.mkdtemp(prefix="graft-bench-probe-"))
    for name, (data, data_options, split) in sets.items():
        if isinstance(data, Path) and not data.is_dir():
            print(f"  {name}: skipped (no {data})")
            continue
        row: dict[str, Any] = {"split": split}
        for precision in ("auto", "fp32"):
            # Each in an empty cache, as on a first run (auto keeps fp32 features it finds).
            previous = os.environ.get("GRAFT_CACHE_DIR")
            os.environ["GRAFT_CACHE_DIR"] = str(scratch / f"cache-{name}-{precision}")
            start = time.perf_counter()
            try:
                result = train_linear(
                    data,
                    name=name,
                    out=scratch / f"{name}-{precision}",
                    data_options=data_options,
                    options=LinearOptions(precision=precision),
                )
            finally:
                if previous is not None:
                    os.environ["GRAFT_CACHE_DIR"] = previous
            row[precision] = {
                "accuracy": float(result.metrics[split]["accuracy"]),
                "seconds": time.perf_counter() - start,
                "precision": result.extraction["precision"][0]["precision"],
                "reason": result.extraction["precision"][0]["reason"],
            }
        row["difference_points"] = 100 * (row["auto"]["accuracy"] - row["fp32"]["accuracy"])
        results[name] = row
        print(
            f"  {name}: fp32 {row['fp32']['accuracy']:.2%}, auto ({row['auto']['precision']}) "
            f"{row['auto']['accuracy']:.2%} ({row['difference_points']:+.2f} points)",
            flush=True,
        )
    return results


def naive_loop(files: list[Path]) -> float:
    """The seeds' loop: one image at a time, load + resize + preprocess + predict (eager)."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from graft.zoo.model import create_model

    model = create_model(BACKBONE).eval()
    to_input = transforms.Compose([transforms.Resize((224, 224)), transforms.PILToTensor()])
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            model.pooled_features(to_input(image).unsqueeze(0))
    return len(files) / (time.perf_counter() - start)


def plain_batched(root: Path, limit: int) -> float:
    """torchvision ImageFolder + DataLoader (2 workers, batch 32) + eager model, fp32."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from graft.zoo.model import create_model

    model = create_model(BACKBONE).eval()
    preprocess = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()]
    )
    folder = datasets.ImageFolder(str(root / "train"), transform=preprocess)
    subset = Subset(folder, range(0, len(folder), max(1, len(folder) // limit)))
    loader = DataLoader(subset, batch_size=32, num_workers=2)
    start, images = time.perf_counter(), 0
    with torch.no_grad():
        for pixels, _ in loader:
            model.pooled_features(pixels)
            images += len(pixels)
    return images / (time.perf_counter() - start)


def probe_accuracies(files: list[Path]) -> dict[str, dict[str, float]]:
    """Linear-probe validation accuracy and cosine to fp32 for int8 and bf16 features."""
    from graft.features.extract import FeatureSpec, calibrate, extract_features
    from graft.features.precision import check_probe

    labels = np.array([f.parent.name for f in files])
    fit = [i for i, f in enumerate(files) if "train" in f.parts]
    score = [i for i, f in enumerate(files) if "train" not in f.parts]
    features = {}
    for precision in ("fp32", "int8", "bf16"):
        spec = calibrate(FeatureSpec.create(BACKBONE, precision=precision), [files[i] for i in fit])
        features[precision] = extract_features(files, spec).features
    results = {}
    for precision, values in features.items():
        a, b = features["fp32"], values
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        probe = check_probe(values[fit], labels[fit])
        accuracy = float(probe.score(values[score], labels[score]))
        results[precision] = {"accuracy": accuracy, "cosine_mean": float(cosine.mean())}
        print(f"  {precision}: probe accuracy {accuracy:.2%}, cosine to fp32 {cosine.mean():.4f}")
    return results


def scaling(files: list[Path], sizes: list[int]) -> list[dict[str, float]]:
    from graft.features.extract import FeatureSpec, feature_engine, stream_features

    spec = FeatureSpec.create(BACKBONE)
    runner = feature_engine(spec)
    rows = []
    for size in sizes:
        chosen = [files[i % len(files)] for i in range(size)]
        with peak_rss() as memory:
            start, images = time.perf_counter(), 0
            for paths, _, _ in stream_features(chosen, spec, engine=runner):
                images += len(paths)
            seconds = time.perf_counter() - start
        row = {
            "images": images,
            "seconds": seconds,
            "ms_per_image": 1000 * seconds / images,
            "peak_rss_mb": memory["peak_mb"],
            "rss_growth_mb": memory["peak_mb"] - memory["start_mb"],
        }
        rows.append(row)
        print(
            f"  {images:>6} images: {row['ms_per_image']:.2f} ms/image, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB (+{row['rss_growth_mb']:.0f} MB)",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--skip-datasets", action="store_true", help="no auto-vs-fp32 probes on four datasets"
    )
    parser.add_argument(
        "--probes-only",
        action="store_true",
        help="only rerun the auto-vs-fp32 probes; merge them into the saved JSON",
    )
    parser.add_argument(
        "--table", action="store_true", help="only rewrite bench/README.md from the saved JSON"
    )
    args = parser.parse_args()
    if args.table:
        write_table(json.loads((HERE / "results" / "engines.json").read_text()))
        return
    if args.probes_only:
        os.environ.setdefault("GRAFT_CACHE_DIR", tempfile.mkdtemp(prefix="graft-bench-"))
        saved = json.loads((HERE / "results" / "engines.json").read_text())
        saved["dataset_probes"] = dataset_probes(args.data.parent)
        (HERE / "results" / "engines.json").write_text(json.dumps(saved, indent=2) + "\n")
        write_table(saved)
        return
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no such folder; pass --data with cats_and_dogs_filtered")
    os.environ.setdefault("GRAFT_CACHE_DIR", tempfile.mkdtemp(prefix="graft-bench-"))
    from graft.data.loading import decode_pixels
    from graft.errors import ConfigError
    from graft.features.extract import FeatureSpec
    from graft.features.layers import feature_module
    from graft.zoo import get_backbone
    from graft.zoo.model import create_model

    files = sorted(args.data.rglob("*.jpg"))
    if args.quick:
        files = files[:: max(1, len(files) // 300)]
    for path in files:  # warm the page cache: every pipeline reads from memory
        path.read_bytes()
    preprocessing = get_backbone(BACKBONE).preprocessing
    train = [f for f in files if "train" in f.parts]
    calibration = decode_pixels(train[:: max(1, len(train) // 300)][:300], preprocessing)
    pixels = decode_pixels(files[:64], preprocessing)

    print(f"{len(files)} images from {args.data}, {os.cpu_count()} cores, {platform.processor()}")
    peak = matmul_peak()
    gflops = model_gflops(feature_module(create_model(BACKBONE)), 224)
    print(f"matmul peak {peak:.0f} GFLOP/s; {BACKBONE}: {gflops:.3f} GFLOP/image")
    # The baselines run first, as in a fresh user script: DataLoader workers fork before any
    # engine has started threads.
    print("end to end, baselines:")
    e2e = {}
    for name, run in [
        ("naive loop (seeds)", lambda: naive_loop(files[:: max(1, len(files) // 300)])),
        ("plain batched PyTorch", lambda: plain_batched(args.data, min(1000, len(files)))),
    ]:
        e2e[name] = run()
        print(f"  {name:<24} {e2e[name]:7.1f} img/s", flush=True)
    print("model only:")
    models = model_only(pixels, calibration)
    sizes = batch_sizes(pixels)
    print("end to end, graft:")
    from graft.features.precision import auto_precision

    labels = [f.parent.name for f in files]
    splits = ["train" if "train" in f.parts else "val" for f in files]
    from graft.data.scan import content_hashes

    auto_spec, choice = auto_precision(
        FeatureSpec.create(BACKBONE), files, labels, splits, content_hashes(files)
    )
    print(f"  {choice.summary()}")
    for name, run in [
        ("graft default (auto)", lambda: graft_stream(files, auto_spec.precision)),
        ("graft fp32", lambda: graft_stream(files)),
        ("graft int8", lambda: graft_stream(files, "int8")),
        ("graft bf16", lambda: graft_stream(files, "bf16")),
        ("graft, torch engine", lambda: graft_stream(files[::3], engine="torch")),
    ]:
        try:
            e2e[name] = run()
        except ConfigError as err:  # an engine or precision this machine lacks
            print(f"  {name}: skipped ({err})")
            continue
        print(f"  {name:<24} {e2e[name]:7.1f} img/s", flush=True)
    default = e2e["graft default (auto)"]
    print("first extraction of the folder (fresh cache, compile and checks included):")
    first = {}
    for precision in ("fp32", "auto"):
        seconds, used = first_extraction(args.data, precision)
        first[precision] = {"seconds": seconds, "precision": used}
        print(f"  --precision {precision} ({used}): {seconds:.1f} s", flush=True)
    ratios = {
        "default / fp32": default / e2e["graft fp32"],
        "default / naive loop": default / e2e["naive loop (seeds)"],
        "default / plain batched PyTorch": default / e2e["plain batched PyTorch"],
        "first extraction, fp32 / auto": first["fp32"]["seconds"] / first["auto"]["seconds"],
        "int8 / plain batched PyTorch": e2e.get("graft int8", float("nan"))
        / e2e["plain batched PyTorch"],
    }
    peak_fraction = {name: value * gflops / peak for name, value in models.items()}
    for name, value in ratios.items():
        print(f"  {name}: {value:.1f}x")
    print(
        "fraction of the matmul peak (model only): "
        + ", ".join(f"{name} {value:.0%}" for name, value in peak_fraction.items())
    )
    print("probe accuracy (train fits, validation scores):")
    accuracy = probe_accuracies(files)
    print("graft train's linear probe, default (auto) vs --precision fp32:")
    probes = {} if args.skip_datasets or args.quick else dataset_probes(args.data.parent)
    print("scaling (graft fp32, no cache):")
    scale = scaling(files, [30, 300, 3000] if args.quick else [300, 3000, 30000])
    results = {
        "machine": {"cores": os.cpu_count(), "processor": platform.processor()},
        "images": len(files),
        "matmul_peak_gflops": peak,
        "model_gflop_per_image": gflops,
        "model_only_img_s": models,
        "batch_size_img_s": sizes,
        "end_to_end_img_s": e2e,
        "ratios": ratios,
        "peak_fraction": peak_fraction,
        "auto_choice": choice.to_dict(),
        "first_extraction": first,
        "probe": accuracy,
        "dataset_probes": probes,
        "scaling": scale,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out = HERE / "results" / ("engines.quick.json" if args.quick else "engines.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}; peak RSS of the whole run {results['max_rss_mb']:.0f} MB")
    if not args.quick:
        write_table(results)


def write_table(results: dict[str, Any]) -> None:
    """Replace the engines section of bench/README.md with these results."""
    e2e, models, ratios = (
        results["end_to_end_img_s"],
        results["model_only_img_s"],
        results["ratios"],
    )
    lines = [
        "<!-- engines:start (written by bench/engines.py) -->",
        f"Measured on {results['machine']['cores']} cores, {results['images']} images "
        f"(cats_and_dogs_filtered), {BACKBONE} ({results['model_gflop_per_image']:.2f} "
        f"GFLOP/image), matmul peak {results['matmul_peak_gflops']:.0f} GFLOP/s.",
        "",
        "| pipeline | images/s | vs plain batched PyTorch |",
        "|---|---:|---:|",
    ]
    plain = e2e["plain batched PyTorch"]
    lines += [f"| {name} | {value:.1f} | {value / plain:.1f}x |" for name, value in e2e.items()]
    lines += [
        "",
        "| model only (batch 32) | images/s | of the fp32 matmul peak |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {value:.1f} | {results['peak_fraction'][name]:.0%} |"
        for name, value in models.items()
    ]
    lines += [
        "",
        "(bf16 and int8 pass 100 %: their units outrun the fp32 peak the column divides by.)",
        "",
        "| precision | probe accuracy (val) | cosine to fp32 |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {row['accuracy']:.2%} | {row['cosine_mean']:.4f} |"
        for name, row in results["probe"].items()
    ]
    lines += ["", "| images (scaling) | ms/image | peak RSS MB |", "|---:|---:|---:|"]
    lines += [
        f"| {row['images']} | {row['ms_per_image']:.2f} | {row['peak_rss_mb']:.0f} |"
        for row in results["scaling"]
    ]
    choice, first = results.get("auto_choice"), results.get("first_extraction")
    if choice and first:
        lines += [
            "",
            f"graft's default is `--precision auto`; here it chose **{choice['precision']}** "
            f"({choice['reason']}).",
            "",
            "| first extraction of the folder (fresh cache; compile and checks included) "
            "| seconds | precision |",
            "|---|---:|---|",
        ]
        lines += [
            f"| `--precision {name}` | {row['seconds']:.1f} | {row['precision']} |"
            for name, row in first.items()
        ]
    probes = results.get("dataset_probes") or {}
    if probes:
        lines += [
            "",
            "| `graft train` linear probe | split | `--precision fp32` | default (auto) "
            "| difference |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {row['split']} | {row['fp32']['accuracy']:.2%} | "
            f"{row['auto']['accuracy']:.2%} ({row['auto']['precision']}) | "
            f"{row['difference_points']:+.2f} pt |"
            for name, row in probes.items()
        ]
    lines += [
        "",
        f"graft default vs `--precision fp32`: {ratios['default / fp32']:.2f}x (pipeline), "
        f"{ratios['first extraction, fp32 / auto']:.2f}x (first extraction); vs the naive loop: "
        f"{ratios['default / naive loop']:.1f}x; vs plain batched PyTorch: "
        f"{ratios['default / plain batched PyTorch']:.1f}x.",
        "<!-- engines:end -->",
    ]
    heading = "## Feature extraction (`bench/engines.py`)"
    replace_section("<!-- engines:start", "<!-- engines:end -->", "\n".join(lines), heading)


if __name__ == "__main__":
    main()
