"""The evaluation plots, as PNG bytes (matplotlib, headless).

Every figure has a title and labelled axes and is readable at a glance: learning curves with the
unfreeze point marked, the confusion matrix in counts and row-normalised, ROC and
precision-recall curves, the reliability diagram, a grid of sample predictions with the wrong
ones marked, and the top-losses gallery (with Grad-CAM overlays where available).

Example:
    >>> png = confusion_png([[5, 1], [0, 4]], ["cat", "dog"])
    >>> png[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

GOOD = "#1a7f37"
BAD = "#cf222e"


def new_figure(width: float, height: float) -> Figure:
    """A headless matplotlib figure (no pyplot state, safe in threads)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def learning_curves_png(history: Sequence[dict[str, Any]], title: str = "learning curves") -> bytes:
    """Training and validation loss and accuracy per epoch; dashed lines where phases change."""
    figure = new_figure(9, 3.4)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    epochs = [entry["epoch"] for entry in history]
    for axis, key, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        axis.plot(epochs, [entry[f"train_{key}"] for entry in history], "o-", label="train")
        if all(f"val_{key}" in entry for entry in history):
            axis.plot(epochs, [entry[f"val_{key}"] for entry in history], "o-", label="validation")
        for before, after in pairwise(history):
            if before["phase"] != after["phase"]:
                axis.axvline(before["epoch"] + 0.5, color="grey", linestyle="--")
                axis.text(
                    before["epoch"] + 0.55,
                    axis.get_ylim()[1],
                    f" {after['phase']}",
                    va="top",
                    fontsize=8,
                    color="grey",
                )
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.set_title(f"{label} per epoch")
        axis.legend()
    figure.suptitle(title)
    return to_png(figure)


def confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """The confusion matrix: counts, and row-normalised (recall per true class)."""
    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 1.0 + 0.55 * len(classes))
    figure = new_figure(2 * size + 1, size)
    for axis, values, title, fmt in zip(
        figure.subplots(1, 2),
        (counts, rows),
        ("counts", "row-normalised"),
        ("{:.0f}", "{:.2f}"),
        strict=True,
    ):
        image = axis.imshow(values, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axis, shrink=0.8)
        for (i, j), value in np.ndenumerate(values):
            colour = "white" if value > values.max() / 2 else "black"
            axis.text(j, i, fmt.format(value), ha="center", va="center", color=colour, fontsize=8)
        axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(classes)), classes, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"confusion matrix ({title})")
    return to_png(figure)


def roc_pr_png(
    curves: dict[str, Any], aucs: Sequence[float | None], classes: Sequence[str]
) -> bytes:
    """ROC curves (with AUC) and precision-recall curves, one per class (one-vs-rest)."""
    figure = new_figure(9, 3.8)
    roc_axis, pr_axis = figure.subplots(1, 2)
    for name, points in curves["roc"].items():
        auc = aucs[list(classes).index(name)]
        roc_axis.plot(
            points["fpr"],
            points["tpr"],
            label=f"{name} (AUC {auc:.3f})" if auc is not None else name,
        )
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_axis.set_xlabel("false positive rate")
    roc_axis.set_ylabel("true positive rate")
    roc_axis.set_title("ROC (one-vs-rest)")
    roc_axis.legend(fontsize=7)
    for name, points in curves["pr"].items():
        pr_axis.plot(points["recall"], points["precision"], label=name)
    pr_axis.set_xlabel("recall")
    pr_axis.set_ylabel("precision")
    pr_axis.set_title("precision-recall")
    pr_axis.legend(fontsize=7)
    return to_png(figure)


def reliability_png(rows: Sequence[dict[str, float]], ece: float) -> bytes:
    """The reliability diagram: accuracy against confidence per bin, and the bin sizes."""
    figure = new_figure(4.6, 4.2)
    axis = figure.subplots()
    centres = [(row["low"] + row["high"]) / 2 for row in rows]
    width = rows[0]["high"] - rows[0]["low"] if rows else 0.05
    axis.bar(
        centres,
        [row["accuracy"] for row in rows],
        width=width * 0.9,
        label="accuracy",
        color="#4c72b0",
    )
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    axis.plot(
        [row["confidence"] for row in rows],
        [row["accuracy"] for row in rows],
        "o",
        color=BAD,
        label="bin mean",
    )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence (top probability)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"reliability diagram (ECE {ece:.3f})")
    axis.legend(fontsize=7, loc="upper left")
    return to_png(figure)


def gallery_png(
    images: Sequence[Image.Image],
    captions: Sequence[str],
    wrong: Sequence[bool],
    title: str,
    columns: int = 6,
) -> bytes:
    """A grid of images with captions; wrong predictions in red, right ones in green."""
    count = max(1, len(images))
    rows = -(-count // columns)
    figure = new_figure(2.0 * columns, 2.25 * rows + 0.4)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, image, caption, bad in zip(axes, images, captions, wrong, strict=False):
        axis.imshow(image)
        axis.set_title(caption, fontsize=7, color=BAD if bad else GOOD)
        for spine in axis.spines.values():
            spine.set_edgecolor(BAD if bad else GOOD)
    figure.suptitle(title)
    return to_png(figure)
