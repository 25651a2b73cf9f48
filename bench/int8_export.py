"""Does `graft export --int8` hold on every dataset? Parity and accuracy, float vs int8.

For each dataset, each strategy trains with its defaults on one split manifest (the same as
``bench/accuracy.py``: the dataset's own splits; ELPV the published 25 % stratified test split),
as ``graft train DATA --strategy S`` would, and the run is exported as a new user would:
``graft export RUN --format onnx --int8``. Each row gives graft's own parity check (top-1
agreement with the float classifier on up to 300 validation/test images; the export is refused
below 99 %), the float and int8 accuracy on the validation (else test) split side by side, what
the quantization kept in float, and the time of the export. A refused export is a row too.

Results go to ``bench/results/int8_export.json`` and a table in ``bench/README.md``.

    .venv/bin/python bench/int8_export.py [--data ../shared/data] [--strategies linear,head]
        [--runs DIR] [NAME ...]

``--runs DIR`` keeps the trained runs there and reuses complete ones on a rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accuracy import DEFAULT_DATA, HERE, manifest
from readme import replace_section

DATASETS = ("cats_and_dogs_filtered", "potato_disease", "brain_mri", "elpv")
START, END = "<!-- int8:start (written by bench/int8_export.py) -->", "<!-- int8:end -->"


def trained(source: Path, strategy: str, out: Path) -> dict[str, Any]:
    """Train ``strategy`` with its defaults into ``out`` (reused when already complete)."""
    import graft
    from graft.runs import read_run_config

    if not (out / "config.json").is_file() or read_run_config(out).status != "complete":
        graft.train(source, strategy=strategy, out=out, overwrite=True)
    config = json.loads((out / "config.json").read_text())
    return {"kept": config.get("safeguard", {}).get("kept")}


def exported(run: Path) -> dict[str, Any]:
    """``graft export RUN --int8``: its check, float vs int8 accuracy, and time."""
    from graft.errors import DataError
    from graft.export import export_model

    start = time.perf_counter()
    try:
        result = export_model(run, format="onnx", int8=True, out=run / "bench.int8.onnx")
    except DataError as err:
        return {"refused": str(err), "seconds": time.perf_counter() - start}
    return {
        "agreement": result.agreement,
        "checked": result.checked,
        "accuracy": result.accuracy,
        "quantization": result.quantization,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(DATASETS), help=", ".join(DATASETS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--strategies", default="linear,head")
    parser.add_argument("--runs", type=Path, help="keep the trained runs here (and reuse them)")
    parser.add_argument("--table", action="store_true", help="only rewrite bench/README.md")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in DATASETS]
    if unknown:
        sys.exit(f"unknown dataset {unknown[0]!r}; choose from: {', '.join(DATASETS)}")
    saved = HERE / "results" / "int8_export.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    if args.table:
        write_table(results)
        return
    work = args.runs or Path(tempfile.mkdtemp(prefix="graft-int8-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        if name != "elpv" and not (args.data / name).is_dir():
            sys.exit(f"{args.data / name}: no such folder; pass --data with the shared datasets")
        source = manifest(name, name, args.data, work)
        for strategy in args.strategies.split(","):
            run = work / f"{name}-{strategy}"
            row = {**trained(source, strategy, run), **exported(run)}
            results.setdefault(name, {})[strategy] = row
            print(f"{name:24} {strategy:9} {cell(row)}", flush=True)
            saved.parent.mkdir(exist_ok=True)
            saved.write_text(json.dumps(results, indent=2))
    write_table(results)


def cell(row: dict[str, Any]) -> str:
    """One run's figures for the table."""
    kept = f" (kept: {row['kept']})" if row.get("kept") else ""
    if "refused" in row:
        return f"**refused** ({row['refused'].split('; ')[0]}), {row['seconds']:.0f} s{kept}"
    accuracy = row["accuracy"]
    change = 100 * (accuracy["int8"] - accuracy["float"]) + 0.0  # + 0.0: never "-0.00"
    return (
        f"{100 * row['agreement']:.1f} % of {row['checked']}; "
        f"{100 * accuracy['float']:.2f} % vs {100 * accuracy['int8']:.2f} % "
        f"({change:+.2f}); {row['seconds']:.0f} s{kept}"
    )


def write_table(results: dict[str, Any]) -> None:
    """The rows as a Markdown table between the markers in bench/README.md."""
    strategies = sorted(
        {s for rows in results.values() for s in rows}, key="linear head finetune".find
    )
    lines = [
        START,
        "`graft export RUN --format onnx --int8` on runs trained with graft's defaults, 2 cores. "
        "Each cell: top-1 agreement with the float model on graft's check (refused below 99 %, "
        "or when int8 loses more than 0.5 point of accuracy); "
        "float vs int8 accuracy on the validation (else test) split (difference in points); "
        "export time; `kept` is what the probe safeguard kept.",
        "",
        "| data | " + " | ".join(strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for name, rows in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(cell(rows[s]) if s in rows else "-" for s in strategies)
            + " |"
        )
    lines.append(END)
    heading = "## int8 export on every dataset (`bench/int8_export.py`)"
    replace_section(START, END, "\n".join(lines), heading)


if __name__ == "__main__":
    main()
