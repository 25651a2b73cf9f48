"""How well ``graft audit`` finds planted label errors and planted near-duplicates, and its time.

For each dataset (a folder with train and validation/test folders under ``--data``), a copy is
made of symbolic links (the images are never copied or changed), then, seeded:
- ``--flip`` of the training images (5 %) get a wrong label: their link goes into another
  class's folder;
- ``--copies`` training images (50) get a near-copy in the validation split (or test where there
  is none): cropped 2-8 % on each side, resized by 0.6-1.2 and re-encoded as JPEG at quality
  60-90, under the same class.

Then ``graft.audit`` runs twice on the copy: cold (an empty cache: features and hashes
computed) and warm (everything cached). It prints, per dataset:
- label errors: precision and recall of the flipped images among the top-k suspects
  (k = number flipped), the ROC AUC of the suspect score, and what cleanlab's flagged set holds;
- near-duplicates: recall of the planted pairs (found as copies; those found only as
  look-alikes are counted apart), and every other pair found (with its similarity), which are
  either real copies in the original data or false pairs;
- seconds of the cold and the warm audit.

    .venv/bin/python bench/audit.py [--data ../shared/data] [--sets cats_and_dogs_filtered ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}


def linked_copy(
    source: Path, target: Path, *, flip: float, copies: int, seed: int
) -> tuple[set[Path], set[tuple[Path, Path]]]:
    """Build the planted copy; return the flipped links and the (original, copy) pairs."""
    rng = random.Random(seed)
    splits = {p.name: p for p in sorted(source.iterdir()) if p.is_dir() and p.name in SPLIT_NAMES}
    train = splits["train"]
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    images = {
        name: {c: sorted(f for f in (folder / c).iterdir() if f.is_file()) for c in classes}
        for name, folder in splits.items()
    }
    train_files = [(c, f) for c in classes for f in images["train"][c]]
    flipped_sources = set(rng.sample(train_files, round(flip * len(train_files))))
    flipped: set[Path] = set()
    for name, by_class in images.items():
        for label, files in by_class.items():
            for file in files:
                new_label = label
                if name == "train" and (label, file) in flipped_sources:
                    new_label = rng.choice([c for c in classes if c != label])
                link = target / name / new_label / file.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(file.resolve())
                if new_label != label:
                    flipped.add(link)
    held_out = next(n for n in ("validation", "val", "valid", "test") if n in splits)
    candidates = [pair for pair in train_files if pair not in flipped_sources]
    pairs: set[tuple[Path, Path]] = set()
    for index, (label, file) in enumerate(rng.sample(candidates, copies)):
        with Image.open(file) as opened:
            image = opened.convert("RGB")
        w, h = image.size
        box = (
            round(w * rng.uniform(0.02, 0.08)),
            round(h * rng.uniform(0.02, 0.08)),
            round(w * (1 - rng.uniform(0.02, 0.08))),
            round(h * (1 - rng.uniform(0.02, 0.08))),
        )
        scale = rng.uniform(0.6, 1.2)
        image = image.crop(box)
        image = image.resize(
            (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        )
        copy = target / held_out / label / f"planted_copy_{index:03d}.jpg"
        image.save(copy, quality=rng.randint(60, 90))
        pairs.add((target / "train" / label / file.name, copy))
    return flipped, pairs


def measure(name: str, source: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    import graft

    target = work / name
    flipped, planted = linked_copy(
        source, target, flip=args.flip, copies=args.copies, seed=args.seed
    )
    os.environ["GRAFT_CACHE_DIR"] = str(work / f"cache-{name}")
    seconds = {}
    for phase in ("cold", "warm"):
        start = time.perf_counter()
        result = graft.audit(target, out=work / f"audit-{name}-{phase}")
        seconds[phase] = round(time.perf_counter() - start, 1)
    paths = [sample.path for sample in result.samples]
    truth = np.array([path in flipped for path in paths])
    k = int(truth.sum())
    top = np.argsort(-result.suspect, kind="stable")[:k]
    hits = int(truth[top].sum())
    flagged = {issue.row for issue in result.label_issues}
    flagged_hits = int(sum(truth[row] for row in flagged))
    alike = {(paths[p.first], paths[p.second]) for p in result.duplicates if p.look_alike}
    found = {(paths[p.first], paths[p.second]): p for p in result.duplicates if not p.look_alike}
    planted_found = [pair for pair in planted if pair in found]
    others = [p for pair, p in found.items() if pair not in planted]
    row = {
        "data": name,
        "images": len(paths),
        "flipped": k,
        "top_k_precision": round(hits / k, 3),
        "top_k_recall": round(hits / k, 3),
        "suspect_auc": round(float(roc_auc_score(truth, result.suspect)), 4),
        "cleanlab_flagged": len(flagged),
        "cleanlab_precision": round(flagged_hits / max(1, len(flagged)), 3),
        "cleanlab_recall": round(flagged_hits / k, 3),
        "planted_pairs": len(planted),
        "planted_found": len(planted_found),
        "planted_recall": round(len(planted_found) / len(planted), 3),
        "planted_as_look_alikes": sum(pair in alike for pair in planted),
        "other_pairs": len(others),
        "look_alike_pairs": len(alike),
        "other_pairs_across_splits": sum(p.across for p in others),
        "other_pairs_exact": sum(p.exact for p in others),
        "other_pairs_shown": [
            {
                "first": str(paths[p.first].relative_to(target)),
                "second": str(paths[p.second].relative_to(target)),
                "similarity": p.similarity,
                "cosine": round(p.cosine, 3),
                "hamming": p.hamming,
                "exact": p.exact,
            }
            for p in others[:20]
        ],
        "planted_missed": [
            str(copy.relative_to(target))
            for original, copy in planted
            if (original, copy) not in found
        ],
        "outliers": len(result.outliers),
        "overlap": result.overlap[:3],
        "seconds_cold": seconds["cold"],
        "seconds_warm": seconds["warm"],
        "timings_warm": {k: round(v, 2) for k, v in result.timings.items()},
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sets", nargs="+", default=["cats_and_dogs_filtered", "potato_disease"])
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/audit.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="graft-audit-bench-") as tmp:
        for name in args.sets:
            row = measure(name, args.data / name, args, Path(tmp))
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
    print(
        f"{'data':26} {'flipped':>7} {'top-k P=R':>9} {'AUC':>6} {'planted':>8} {'recall':>6} "
        f"{'other pairs':>11} {'cold s':>7} {'warm s':>7}"
    )
    for row in rows:
        print(
            f"{row['data']:26} {row['flipped']:7d} {row['top_k_precision']:9.3f} "
            f"{row['suspect_auc']:6.3f} {row['planted_pairs']:8d} {row['planted_recall']:6.3f} "
            f"{row['other_pairs']:11d} {row['seconds_cold']:7.1f} {row['seconds_warm']:7.1f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
