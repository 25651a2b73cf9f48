"""Few-shot probe: graft's cross-validated C against a fixed C = 0.1, over many draws.

A 5-shot training set is 10-20 images, and which images are drawn moves accuracy by more
than any choice of C does, so one draw cannot say whether graft's selection of the logistic
regression's C loses to the plain fixed-C script. This bench draws the training images many
times with graft's own sampling (``--per-class K`` with seeds 0..N-1, as ``graft train
--per-class K --seed S`` draws them), fits both on the same cached features of the default
backbone, and scores both on the whole held-out split (test, else validation):

* graft: ``fit_head("logreg")`` (standardised features, C by stratified cross-validated log
  loss), the linear probe of ``graft train``;
* plain: ``StandardScaler`` + ``LogisticRegression(C=0.1)``;
* and, where the engine computes bf16 natively, graft's probe on bf16 features (what
  ``--precision auto`` takes where its check passes), paired with the same on fp32.

It prints, per dataset and shot count, the mean accuracy of each over the draws, the mean
paired difference with its standard error and the worst single draw, and writes them to
``bench/results/fewshot.json`` and a table in ``bench/README.md``.

    .venv/bin/python bench/fewshot.py [--data ../shared/data] [--draws 30] [--shots 5,10] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from readme import replace_section

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
NAMES = ("potato_disease", "brain_mri", "cats_and_dogs_filtered", "elpv")
START, END = "<!-- fewshot:start (written by bench/fewshot.py) -->", "<!-- fewshot:end -->"


def load(name: str, data: Path) -> tuple[Any, np.ndarray, np.ndarray | None, list[int], list[int]]:
    """The dataset's images, the fp32 and bf16 features of all of them (bf16: ``None`` where
    the engine has no native bf16 here), and the train and held-out rows."""
    from graft.data.prepare import DataOptions, prepare
    from graft.engines.base import bf16_native
    from graft.features.extract import FeatureSpec, extract_features
    from graft.zoo.registry import DEFAULT_BACKBONE

    if name == "elpv":
        from graft.datasets import elpv

        report = prepare(elpv("binary"), DataOptions(val=0.0, test=0.25, seed=0), name="elpv")
    else:
        report = prepare(data / name, DataOptions())
    images = report.images
    held_split = "test" if images.split("test") else "val"
    samples = list(images.samples)
    spec = FeatureSpec.create(DEFAULT_BACKBONE)
    paths = [s.path for s in samples]
    result = extract_features(paths, spec)
    bf16 = None
    if bf16_native():
        bf16 = extract_features(paths, spec.with_precision("bf16")).features.astype(np.float64)
    train = [i for i, s in enumerate(samples) if s.split == "train"]
    held = [i for i, s in enumerate(samples) if s.split == held_split]
    return images, result.features.astype(np.float64), bf16, train, held


def draw_rows(images: Any, shots: int, seed: int) -> set[str]:
    """The paths graft's ``--per-class shots --seed seed`` keeps for training."""
    from graft.data.splits import subset_train

    kept = subset_train(images, per_class=shots, seed=seed)
    return {str(s.path) for s in kept.samples if s.split == "train"}


def compare(name: str, data: Path, shots: list[int], draws: int) -> dict[str, Any]:
    """Both fits on every draw; mean accuracies, paired differences and the worst draw."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from graft.heads import fit_head

    images, features, bf16, train, held = load(name, data)
    samples = list(images.samples)
    labels = np.array([s.label for s in samples])
    x_held, y_held = features[held], labels[held]
    out: dict[str, Any] = {"n_held": len(held)}
    for k in shots:
        graft_acc, plain_acc, bf16_acc = [], [], []
        for seed in range(draws):
            chosen = draw_rows(images, k, seed)
            rows = [i for i in train if str(samples[i].path) in chosen]
            x, y = features[rows], labels[rows]
            head = fit_head("logreg", x, y)
            graft_acc.append(float(np.mean(np.array(head.predict(x_held)) == y_held)))
            plain = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
            plain_acc.append(float(np.mean(plain.fit(x, y).predict(x_held) == y_held)))
            if bf16 is not None:  # the same probe on bf16 features (--precision auto's choice)
                low = fit_head("logreg", bf16[rows], y)
                bf16_acc.append(float(np.mean(np.array(low.predict(bf16[held])) == y_held)))
        gaps = 100 * (np.array(graft_acc) - np.array(plain_acc))
        out[str(k)] = {
            "graft": 100 * float(np.mean(graft_acc)),
            "plain": 100 * float(np.mean(plain_acc)),
            "gap": float(gaps.mean()),
            "se": float(gaps.std(ddof=1) / np.sqrt(len(gaps))),
            "worst": float(gaps.min()),
            "best": float(gaps.max()),
            "seed0_gap": float(gaps[0]),
            "draws": draws,
        }
        row = out[str(k)]
        if bf16_acc:
            drops = 100 * (np.array(bf16_acc) - np.array(graft_acc))
            row["bf16"] = {
                "graft": 100 * float(np.mean(bf16_acc)),
                "gap": float(drops.mean()),
                "se": float(drops.std(ddof=1) / np.sqrt(len(drops))),
                "seed0_gap": float(drops[0]),
            }
        print(
            f"{name:24} {k:2}-shot  graft {row['graft']:6.2f} %  plain {row['plain']:6.2f} %  "
            f"gap {row['gap']:+.2f} ± {row['se']:.2f}  worst {row['worst']:+.2f}  "
            f"seed 0 {row['seed0_gap']:+.2f}",
            flush=True,
        )
        if "bf16" in row:
            low = row["bf16"]
            print(
                f"{'':24} {k:2}-shot  graft on bf16 features {low['graft']:6.2f} %  "
                f"bf16 - fp32 {low['gap']:+.2f} ± {low['se']:.2f}  seed 0 {low['seed0_gap']:+.2f}",
                flush=True,
            )
    return out


def bf16_cell(low: dict[str, Any] | None) -> str:
    """The bf16 column's cell, ``-`` where it was not measured."""
    if low is None:
        return "-"
    return f"{low['gap']:+.2f} ± {low['se']:.2f} ({low['seed0_gap']:+.2f})"


def write_table(results: dict[str, Any]) -> None:
    """The results as a table between this bench's markers in bench/README.md."""
    lines = [
        START,
        "graft's linear probe (C by cross-validated log loss) vs `StandardScaler` + "
        "`LogisticRegression(C=0.1)` on the same features (efficientnet_lite0.in1k, fp32), "
        "trained on graft's own `--per-class K --seed S` draws, S = 0..N-1, scored on the whole "
        "held-out split. Gap: graft minus plain in points, mean ± standard error over the draws; "
        "worst: the single draw where graft did worst; seed 0: the draw `bench/accuracy.py` uses. "
        "bf16: graft's probe on bf16 features (what `--precision auto` takes where its check "
        "passes), minus the same on fp32 features, mean ± standard error (seed 0).",
        "",
        "| data (held-out images) | shots | draws | graft | plain C=0.1 | gap | worst | seed 0 "
        "| bf16 - fp32 (seed 0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results["rows"].items():
        for k, row in rows.items():
            if k == "n_held":
                continue
            lines.append(
                f"| {name} ({rows['n_held']}) | {k} | {row['draws']} | {row['graft']:.2f} % | "
                f"{row['plain']:.2f} % | {row['gap']:+.2f} ± {row['se']:.2f} | "
                f"{row['worst']:+.2f} | {row['seed0_gap']:+.2f} | {bf16_cell(row.get('bf16'))} |"
            )
    lines.append(END)
    heading = "## Few-shot: graft's C against a fixed C (`bench/fewshot.py`)"
    replace_section(START, END, "\n".join(lines), heading)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NAMES), help=", ".join(NAMES))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--shots", default="5,10")
    parser.add_argument("--table", action="store_true", help="only rewrite bench/README.md")
    args = parser.parse_args()
    saved = HERE / "results" / "fewshot.json"
    if args.table:
        write_table(json.loads(saved.read_text()))
        return
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        sys.exit(f"unknown dataset {unknown[0]!r}; choose from: {', '.join(NAMES)}")
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    results.setdefault("rows", {})
    shots = [int(k) for k in args.shots.split(",")]
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in args.names:
        if name != "elpv" and not (args.data / name).is_dir():
            sys.exit(f"{args.data / name}: no such folder; pass --data with the shared datasets")
        results["rows"][name] = compare(name, args.data, shots, args.draws)
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(results, indent=2))
    write_table(results)


if __name__ == "__main__":
    main()
