"""Do the transferability scores of ``graft rank`` predict the linear probe's real accuracy?

For each dataset: run ``graft rank`` in a fresh process on an empty cache (timed: the issue's
budget is 5 minutes per dataset), then train the linear probe of every candidate
(``graft.train`` with that backbone and layer) and read its accuracy on the held-out split (test,
else validation), then report Kendall's tau between each score and that accuracy. Results go to
``bench/results/rank_vs_probe.json`` and a table in ``bench/README.md``.

    .venv/bin/python bench/rank_vs_probe.py [--data ../shared/data] [DATASET ...]
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
from typing import Any

from readme import replace_section

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
DATASETS = ("cats_and_dogs_filtered", "potato_disease", "brain_mri")
CANDIDATES = "all-available,efficientnet_lite0.in1k@stage4,efficientnet_lite0.in1k@stage5"


def run_rank(data: Path, cache: Path) -> tuple[dict[str, Any], float]:
    """``graft rank --json`` in a fresh process with an empty cache; (ranking, seconds)."""
    env = {**os.environ, "GRAFT_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "graft", "rank", str(data), "--json", "--backbones", CANDIDATES],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout), time.perf_counter() - start


def probe_accuracy(data: Path, backbone: str, layer: str, out: Path) -> tuple[str, float]:
    import graft

    result = graft.train(data, backbone=backbone, layer=layer, out=out, overwrite=True)
    split = "test" if "test" in result.metrics else "val"
    return split, float(result.metrics[split]["accuracy"])


def kendall(scores: list[float], accuracies: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(scores, accuracies).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--table", action="store_true", help="only rewrite bench/README.md from the saved JSON"
    )
    args = parser.parse_args()
    saved = HERE / "results" / "rank_vs_probe.json"
    if args.table:
        write_table(json.loads(saved.read_text()))
        return
    results: dict[str, Any] = {}
    for name in args.datasets:
        data = args.data / name
        if not data.is_dir():
            sys.exit(f"{data}: no such folder; pass --data with the shared datasets")
        cache = Path(tempfile.mkdtemp(prefix="graft-rank-"))
        ranking, seconds = run_rank(data, cache)
        print(f"{name}: graft rank (cold cache, whole process) {seconds:.0f} s", flush=True)
        os.environ["GRAFT_CACHE_DIR"] = str(cache)
        rows = []
        for candidate in ranking["candidates"]:
            split, accuracy = probe_accuracy(
                data,
                candidate["backbone"],
                candidate["layer"],
                Path(tempfile.mkdtemp()) / "run",
            )
            rows.append({**candidate, "accuracy": accuracy, "split": split})
            print(f"  {candidate['name']:<36} {split} accuracy {accuracy:.2%}", flush=True)
        accuracies = [row["accuracy"] for row in rows]
        taus = {}
        for score in ("logme", "h_score", "knn", "linear_cv", "leep", "nce"):
            having = [row for row in rows if score in row["scores"]]
            if len(having) >= 3:
                taus[score] = kendall(
                    [row["scores"][score] for row in having], [row["accuracy"] for row in having]
                )
        print("  Kendall tau vs accuracy: " + ", ".join(f"{k} {v:+.2f}" for k, v in taus.items()))
        results[name] = {
            "rank_seconds": seconds,
            "images": ranking["images"],
            "recommended": ranking["recommended"],
            "best_by_accuracy": max(rows, key=lambda r: r["accuracy"])["name"],
            "rows": rows,
            "kendall_tau": taus,
            "accuracies": accuracies,
        }
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {saved}")
    write_table(results)


SCORES = ("logme", "h_score", "knn", "linear_cv", "leep", "nce")


def write_table(results: dict[str, Any]) -> None:
    """Replace the ranking section of bench/README.md: per dataset, each candidate's probe
    accuracy and its place (1 = best) under each score, and Kendall's tau per score."""
    from graft.ranking.rank import Candidate, _recommendation_order

    lines = ["<!-- rank:start (written by bench/rank_vs_probe.py) -->"]
    for name, result in results.items():
        candidates = [
            Candidate(r["backbone"], r["layer"], r["dim"], r["images_per_s"], r["scores"])
            for r in result["rows"]
        ]
        result["recommended"] = _recommendation_order(candidates)[0].name  # the current rule
        rows = sorted(result["rows"], key=lambda r: -r["accuracy"])
        places = {}
        for score in SCORES:
            having = sorted(
                (r for r in rows if score in r["scores"]), key=lambda r: -r["scores"][score]
            )
            places[score] = {r["name"]: i for i, r in enumerate(having, 1)}
        split = rows[0]["split"]
        lines += [
            "",
            f"**{name}**: `graft rank` {result['rank_seconds']:.0f} s cold (whole process, "
            f"{result['images']} training images, 7 candidates); recommended "
            f"`{result['recommended']}`, best by {split} accuracy `{result['best_by_accuracy']}`.",
            "",
            f"| candidate | linear probe {split} accuracy | " + " | ".join(SCORES) + " |",
            "|---|---:|" + "---:|" * len(SCORES),
        ]
        for row in rows:
            cells = [str(places[score].get(row["name"], "")) for score in SCORES]
            lines.append(f"| {row['name']} | {row['accuracy']:.2%} | " + " | ".join(cells) + " |")
        taus = result["kendall_tau"]
        lines.append(
            "| Kendall tau vs accuracy | | "
            + " | ".join(f"{taus[s]:+.2f}" if s in taus else "" for s in SCORES)
            + " |"
        )
    lines += ["", "<!-- rank:end -->"]
    heading = "## Backbone ranking vs the real linear probe (`bench/rank_vs_probe.py`)"
    replace_section("<!-- rank:start", "<!-- rank:end -->", "\n".join(lines), heading)


if __name__ == "__main__":
    main()
