"""``compare.html``: the comparison table, McNemar tests, overlaid ROC curves, learning curves.

Example:
    >>> callable(write_compare_report)
    True
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from graft.evaluation.plots import new_figure, to_png
from graft.fileio import write_bytes_atomic
from graft.html import (
    Section,
    image_tag,
    paragraph,
    percent_with_interval,
    table,
    write_html,
)
from graft.ladder.comparison import COMPARE_HTML, Comparison, Row

if TYPE_CHECKING:
    from pathlib import Path


def write_compare_report(comparison: Comparison) -> Path:
    """Write ``compare.html`` (and the plots as PNGs) into the comparison folder."""
    rows = comparison.rows
    best = comparison.best
    worst = min(rows, key=lambda row: row.metrics["accuracy"])
    header = [
        "backbone",
        "strategy",
        "accuracy [95 % CI]",
        "macro-F1 [95 % CI]",
        "ROC AUC [95 % CI]",
        "train time",
        "inference img/s",
        "trainable params",
        "total params",
    ]
    body = [
        [
            row.backbone,
            row.strategy,
            percent_with_interval(
                row.metrics["accuracy"], row.metrics.get("intervals", {}).get("accuracy")
            ),
            percent_with_interval(
                row.metrics["macro_f1"], row.metrics.get("intervals", {}).get("macro_f1")
            ),
            _auc(row),
            f"{row.train_seconds:.0f} s" if row.train_seconds is not None else "",
            f"{row.images_per_second:.1f}" if row.images_per_second else "",
            f"{row.trainable_params:,}" if row.trainable_params is not None else "",
            f"{row.total_params:,}" if row.total_params is not None else "",
        ]
        for row in rows
    ]
    classes = ["best" if row is best else "worst" if row is worst else "" for row in rows]
    intro = paragraph(
        f"{len(rows)} runs evaluated on the same {len(comparison.truth)} images (the "
        f"{comparison.split} split of {comparison.out / 'split.csv'}). Intervals are 95 % "
        "bootstrap intervals over those images. Best run highlighted green, worst red."
    )
    mcnemar = table(
        ["best", "other", "best right, other wrong", "best wrong, other right", "McNemar p"],
        [
            [
                m["best"],
                m["other"],
                m["best_right_other_wrong"],
                m["best_wrong_other_right"],
                f"{m['p_value']:.3g}",
            ]
            for m in comparison.mcnemar
        ],
        table_id="mcnemar",
    )
    sections = [
        Section("Runs", intro + table(header, body, row_classes=classes, table_id="runs")),
        Section(
            "McNemar's exact test: is the best run really better?",
            mcnemar
            + paragraph(
                "p < 0.05: the two runs' errors differ more than chance would make them on "
                "these images.",
                note=True,
            ),
        ),
    ]
    roc = _roc_overlay(comparison, best, worst)
    curves = _learning_curves(rows)
    plots = comparison.out / "plots"
    plots.mkdir(exist_ok=True)
    write_bytes_atomic(plots / "roc_overlay.png", roc)
    sections.append(Section("ROC curves of every run", image_tag(roc, "ROC curves")))
    if curves is not None:
        write_bytes_atomic(plots / "learning_curves.png", curves)
        sections.append(Section("Learning curves", image_tag(curves, "learning curves")))
    if comparison.notes:
        sections.append(
            Section("Notes", "".join(paragraph(note, note=True) for note in comparison.notes))
        )
    return write_html(
        comparison.out / COMPARE_HTML, f"graft comparison: {comparison.out.name}", sections
    )


def _auc(row: Row) -> str:
    auc = row.metrics.get("roc_auc")
    if auc is None:
        return ""
    text = f"{auc:.4f}"
    if row.roc_auc_interval:
        text += f" [{row.roc_auc_interval[0]:.4f}, {row.roc_auc_interval[1]:.4f}]"
    return text


def _roc_overlay(comparison: Comparison, best: Row, worst: Row) -> bytes:
    """Every run's ROC curve on one plot (micro-averaged over classes beyond two)."""
    from sklearn.metrics import roc_curve

    y = np.array([comparison.classes.index(label) for label in comparison.truth])
    figure = new_figure(6.5, 5.2)
    axis = figure.subplots()
    for row in comparison.rows:
        if len(comparison.classes) == 2:
            fpr, tpr, _ = roc_curve(y == 1, row.probabilities[:, 1])
        else:
            onehot = np.eye(len(comparison.classes))[y]
            fpr, tpr, _ = roc_curve(onehot.ravel(), row.probabilities.ravel())
        highlighted = row is best or row is worst
        label = f"{row.name} (AUC {row.metrics.get('roc_auc') or 0:.3f})" + (
            " best" if row is best else " worst" if row is worst else ""
        )
        axis.plot(
            fpr,
            tpr,
            linewidth=2.6 if highlighted else 1.0,
            alpha=1.0 if highlighted else 0.6,
            label=label,
        )
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    scope = "" if len(comparison.classes) == 2 else " (micro-average over classes)"
    axis.set_title(f"ROC curves{scope}")
    axis.legend(fontsize=7, loc="lower right")
    return to_png(figure)


def _learning_curves(rows: list[Row]) -> bytes | None:
    trained = [row for row in rows if row.history]
    if not trained:
        return None
    figure = new_figure(3.4 * len(trained), 3.2)
    axes = np.atleast_1d(figure.subplots(1, len(trained)))
    for axis, row in zip(axes, trained, strict=True):
        epochs = [entry["epoch"] for entry in row.history]
        axis.plot(epochs, [entry["train_accuracy"] for entry in row.history], "o-", label="train")
        if all("val_accuracy" in entry for entry in row.history):
            axis.plot(
                epochs, [entry["val_accuracy"] for entry in row.history], "o-", label="validation"
            )
        for before, after in pairwise(row.history):
            if before["phase"] != after["phase"]:
                axis.axvline(before["epoch"] + 0.5, color="grey", linestyle="--")
        axis.set_title(row.name, fontsize=8)
        axis.set_xlabel("epoch")
        axis.set_ylabel("accuracy")
        axis.legend(fontsize=7)
    return to_png(figure)
