"""Does adapting more of the network ever lose to the probe? graft's defaults, data x strategy.

For each dataset a split manifest is written once (the dataset's own splits; ELPV: the
published 25 % stratified test split), and every strategy trains from it with its defaults,
as a new user would run ``graft train DATA --strategy S``: the linear probe, ``head``,
``finetune`` and ``auto`` (``--budget``). The neural strategies carve their validation split
from train when the data has none (cats_and_dogs_filtered and potato_disease have one). Each
row: accuracy with its 95 % bootstrap interval and macro-F1 on the held-out split (test,
else validation), and wall time. Each dataset starts from an empty feature cache, as a new
user's first run does. Few-shot rows (``--per-class 5``) add a plain baseline:
``StandardScaler`` + ``LogisticRegression(C=0.1)`` on the same features as graft's probe.

Results go to ``bench/results/accuracy.json`` and a table in ``bench/README.md``.

    .venv/bin/python bench/accuracy.py [--data ../shared/data] [--budget 10m] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from readme import replace_section

from graft.ladder.auto import DEFAULT_BUDGET

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
STRATEGIES = ("linear", "head", "finetune", "auto")
#: name -> (folder under --data or "elpv", per_class)
DATASETS: dict[str, tuple[str, int | None]] = {
    "cats_and_dogs_filtered": ("cats_and_dogs_filtered", None),
    "potato_disease": ("potato_disease", None),
    "brain_mri": ("brain_mri", None),
    "elpv": ("elpv", None),
    "potato_disease 5-shot": ("potato_disease", 5),
    "brain_mri 5-shot": ("brain_mri", 5),
}
START, END = "<!-- accuracy:start (written by bench/accuracy.py) -->", "<!-- accuracy:end -->"


def manifest(name: str, folder: str, data: Path, out: Path) -> Path:
    """The dataset's split manifest (``split.csv``), written once and shared by every row."""
    from graft.data.prepare import DataOptions, prepare
    from graft.data.splits import write_manifest

    path = out / f"{folder}.csv"
    if path.is_file():
        return path
    if folder == "elpv":
        from graft.datasets import elpv

        report = prepare(elpv("binary"), DataOptions(val=0.0, test=0.25, seed=0), name="elpv")
    else:
        report = prepare(data / folder, DataOptions())
    write_manifest(path, report.images.samples, report.hashes)
    return path


def run(
    source: Path, strategy: str, out: Path, per_class: int | None, budget: str
) -> dict[str, Any]:
    """Train one strategy with its defaults; its held-out metrics and wall time."""
    import graft

    options: dict[str, Any] = {"per_class": per_class} if per_class else {}
    if strategy == "auto":
        options["budget"] = budget
    start = time.perf_counter()
    result: Any = graft.train(source, strategy=strategy, out=out, overwrite=True, **options)
    seconds = time.perf_counter() - start
    split = "test" if "test" in result.metrics else "val"
    metrics = result.metrics[split]
    row = {
        "split": split,
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "interval": metrics.get("intervals", {}).get("accuracy"),
        "macro_f1": metrics["macro_f1"],
        "seconds": seconds,
    }
    config = json.loads((out / "config.json").read_text())
    if "safeguard" in config:
        row["kept"] = config["safeguard"].get("kept")
    if "auto" in config:
        row["kept"] = config["auto"]["chosen"]
    return row


def plain_baseline(source: Path, probe_run: Path, per_class: int) -> dict[str, Any]:
    """``StandardScaler`` + ``LogisticRegression(C=0.1)`` on the probe run's own features."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import graft
    from graft.data.prepare import DataOptions, prepare
    from graft.features.extract import extract_features

    spec = graft.load(probe_run).specs[0]  # type: ignore[attr-defined]
    report = prepare(source, DataOptions(per_class=per_class))
    held = report.images.split("test") or report.images.split("val")
    split = "test" if report.images.split("test") else "val"
    train = report.images.split("train")
    x_train = extract_features([s.path for s in train], spec).features
    x_held = extract_features([s.path for s in held], spec).features
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    model.fit(x_train, [s.label for s in train])
    predicted = model.predict(x_held)
    accuracy = float(np.mean(predicted == np.array([s.label for s in held])))
    return {"split": split, "n": len(held), "accuracy": accuracy, "precision": spec.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(DATASETS), help=", ".join(DATASETS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--budget", default=DEFAULT_BUDGET, help="auto's budget (its default)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--table", action="store_true", help="only rewrite bench/README.md")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in DATASETS]
    if unknown:
        sys.exit(f"unknown dataset {unknown[0]!r}; choose from: {', '.join(DATASETS)}")
    saved = HERE / "results" / "accuracy.json"
    if args.table:
        write_table(json.loads(saved.read_text()))
        return
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    results.setdefault("rows", {})
    results["budget"] = args.budget
    work = Path(tempfile.mkdtemp(prefix="graft-accuracy-"))
    for name in args.names:
        folder, per_class = DATASETS[name]
        if folder != "elpv" and not (args.data / folder).is_dir():
            sys.exit(f"{args.data / folder}: no such folder; pass --data with the shared datasets")
        source = manifest(name, folder, args.data, work)
        # every dataset starts from an empty cache, as a new user's first run does: the linear
        # run's --precision auto then checks bf16 itself (with fp32 features cached by an
        # earlier row it takes those instead, and a row's figure would depend on the rows
        # before it)
        os.environ["GRAFT_CACHE_DIR"] = str(work / f"cache-{name.replace(' ', '_')}")
        rows: dict[str, Any] = results["rows"].get(name, {})  # rerun rows replace their own
        for strategy in args.strategies.split(","):
            out = work / f"{name.replace(' ', '_')}-{strategy}"
            rows[strategy] = run(source, strategy, out, per_class, args.budget)
            row = rows[strategy]
            print(
                f"{name:24} {strategy:9} {100 * row['accuracy']:6.2f} % "
                f"F1 {row['macro_f1']:.4f} {row['seconds']:6.0f} s {row.get('kept', '')}",
                flush=True,
            )
            if strategy == "linear" and per_class:
                rows["plain C=0.1"] = plain_baseline(source, out, per_class)
                print(f"{name:24} plain     {100 * rows['plain C=0.1']['accuracy']:6.2f} %")
        results["rows"][name] = rows
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(results, indent=2))
    write_table(results)


def write_table(results: dict[str, Any]) -> None:
    """The rows as a Markdown table between the markers in bench/README.md."""

    def cell(row: dict[str, Any] | None) -> str:
        if row is None:
            return "-"
        interval = row.get("interval")
        text = f"{100 * row['accuracy']:.2f} %"
        if interval:
            text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
        if "macro_f1" in row:
            text += f", F1 {row['macro_f1']:.3f}, {row['seconds']:.0f} s"
        if row.get("kept"):
            text += f" (kept: {row['kept']})"
        return text

    lines = [
        START,
        f"graft's defaults, as `graft train DATA --strategy S` (auto: `--budget "
        f"{results.get('budget')}`), 2 cores, efficientnet_lite0.in1k. Accuracy [95 % bootstrap "
        "interval], macro-F1, wall time; `kept` is what the probe safeguard or auto kept.",
        "",
        "| data (split) | probe | head | finetune | auto | plain LR C=0.1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in results["rows"].items():
        split = next(iter(rows.values()))["split"]
        lines.append(
            f"| {name} ({split}, {next(iter(rows.values()))['n']}) | "
            + " | ".join(
                cell(rows.get(key)) for key in ("linear", "head", "finetune", "auto", "plain C=0.1")
            )
            + " |"
        )
    lines.append(END)
    block = "\n".join(lines)
    replace_section(START, END, block, "## Accuracy of the defaults (`bench/accuracy.py`)")
    print(block)


if __name__ == "__main__":
    main()
