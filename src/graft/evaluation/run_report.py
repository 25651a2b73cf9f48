"""``graft evaluate --report``: one self-contained ``report.html`` per run, plots saved beside it.

Example:
    >>> from graft.evaluation.evaluate import evaluate_run
    >>> path = write_run_report(evaluate_run("runs/cats"))  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'report.html'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graft.data.images import load_image
from graft.data.transforms import eval_transform
from graft.errors import DataError
from graft.evaluation.interpret import confused_pairs, gradcam, gradcam_model, overlay, top_losses
from graft.evaluation.plots import (
    confusion_png,
    gallery_png,
    learning_curves_png,
    reliability_png,
    roc_pr_png,
)
from graft.evaluation.result import GALLERY_SIZE, Evaluation
from graft.fileio import atomic_path
from graft.html import (
    Section,
    image_tag,
    json_block,
    paragraph,
    percent_with_interval,
    table,
    write_html,
)
from graft.metrics import curves, reliability
from graft.predictor import load
from graft.runs import HISTORY, REPORT

if TYPE_CHECKING:
    from PIL import Image

PLOTS = "evaluation"
SAMPLES = 18


def write_run_report(evaluation: Evaluation, out: Path | None = None) -> Path:
    """Write the report (and each plot as a PNG under ``RUN_DIR/evaluation/``); return its path."""
    run = evaluation.run_dir
    plots = run / PLOTS
    plots.mkdir(exist_ok=True)
    m = evaluation.metrics
    y_true = np.array([evaluation.classes.index(label) for label in evaluation.truth])
    sections = [_summary(evaluation), _data(evaluation)]
    figures: list[tuple[str, str, bytes]] = []
    history = _history(run)
    if history:
        figures.append(("learning_curves", "Learning curves", learning_curves_png(history)))
    figures.append(
        (
            "confusion_matrix",
            "Confusion matrix",
            confusion_png(m["confusion_matrix"], evaluation.classes),
        )
    )
    if m.get("roc_auc_per_class") is not None:
        points = curves(evaluation.truth, evaluation.probabilities, evaluation.classes)
        figures.append(
            (
                "roc_pr",
                "ROC and precision-recall curves",
                roc_pr_png(points, m["roc_auc_per_class"], evaluation.classes),
            )
        )
    rows = reliability(y_true, evaluation.probabilities)
    figures.append(("reliability", "Calibration", reliability_png(rows, m.get("ece", 0.0))))
    for name, title, png in figures:
        _save(plots / f"{name}.png", png)
        sections.append(Section(title, image_tag(png, title)))
    if not history:
        sections.append(
            Section(
                "Learning curves",
                paragraph(
                    "This strategy trains no epochs (a classic head on features): there are "
                    "no learning curves.",
                    note=True,
                ),
            )
        )
    samples_png, losses_png, losses_note = _galleries(evaluation)
    _save(plots / "sample_predictions.png", samples_png)
    _save(plots / "top_losses.png", losses_png)
    sections.append(Section("Sample predictions", image_tag(samples_png, "sample predictions")))
    pairs = confused_pairs(m["confusion_matrix"], evaluation.classes)
    pairs_html = (
        table(
            ["true", "predicted as", "images"],
            [[p["true"], p["predicted"], p["count"]] for p in pairs],
        )
        if pairs
        else paragraph("No confusions.", note=True)
    )
    sections.append(
        Section(
            "Most confused pairs and top losses",
            pairs_html + paragraph(losses_note, note=True) + image_tag(losses_png, "top losses"),
        )
    )
    sections.append(Section("Configuration", json_block(evaluation.config)))
    target = out or run / REPORT
    title = f"graft report: {run.name} ({evaluation.run.strategy}, {evaluation.split})"
    return write_html(target, title, sections)


def _save(path: Path, png: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)


def _history(run: Path) -> list[dict[str, Any]]:
    path = run / HISTORY
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return entries


def _summary(evaluation: Evaluation) -> Section:
    m = evaluation.metrics
    intervals = m.get("intervals", {})
    backbone = evaluation.run.backbone_names
    rows = [
        ["accuracy", percent_with_interval(m["accuracy"], intervals.get("accuracy"))],
        ["macro-F1", percent_with_interval(m["macro_f1"], intervals.get("macro_f1"))],
        ["weighted-F1", f"{m['weighted_f1'] * 100:.2f} %"],
        [
            "macro precision / recall",
            f"{m['macro_precision'] * 100:.2f} % / {m['macro_recall'] * 100:.2f} %",
        ],
    ]
    if m.get("roc_auc") is not None:
        rows.append(
            [
                "ROC AUC" + (" (macro, one-vs-rest)" if len(evaluation.classes) > 2 else ""),
                f"{m['roc_auc']:.4f}",
            ]
        )
    if m.get("average_precision") is not None:
        rows.append(["average precision", f"{m['average_precision']:.4f}"])
    for k, value in m.get("top_k_accuracy", {}).items():
        rows.append([f"top-{k} accuracy", f"{value * 100:.2f} %"])
    if "log_loss" in m:
        rows += [
            ["log loss", f"{m['log_loss']:.4f}"],
            ["expected calibration error", f"{m['ece']:.4f}"],
        ]
    header = paragraph(
        f"Run {evaluation.run_dir} - strategy {evaluation.run.strategy} on {backbone} - "
        f"evaluated on the {evaluation.split} split of {evaluation.data} ({m['n']} images"
        + (f", {evaluation.skipped} skipped" if evaluation.skipped else "")
        + "). Intervals are 95 % bootstrap intervals over the evaluated images."
    )
    per_class = table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for name, v in m["per_class"].items()
        ],
        table_id="per-class",
    )
    return Section(
        "Metrics",
        header + table(["metric", "value [95 % interval]"], rows, table_id="metrics") + per_class,
    )


def _data(evaluation: Evaluation) -> Section:
    data = evaluation.run.data
    counts = data.counts
    splits = list(counts)
    rows = [[name, *(counts[s].get(name, 0) for s in splits)] for name in evaluation.classes]
    body = paragraph(
        f"Trained on {data.source} ({data.layout}); data fingerprint "
        f"{data.fingerprint}; {data.skipped} files skipped."
    )
    return Section("Data", body + table(["class", *splits], rows))


def _display_images(paths: list[str], evaluation: Evaluation) -> list[Image.Image]:
    from PIL import Image

    transform = eval_transform(evaluation.run.backbones[0].preprocessing)
    images = []
    for path in paths:
        try:
            pixels = transform(load_image(path)).permute(1, 2, 0).numpy()
            images.append(Image.fromarray(np.ascontiguousarray(pixels)))
        except DataError:
            images.append(Image.new("RGB", (32, 32), (200, 200, 200)))
    return images


def _galleries(evaluation: Evaluation) -> tuple[bytes, bytes, str]:
    proba, classes = evaluation.probabilities, evaluation.classes
    rng = np.random.default_rng(0)
    chosen = sorted(
        rng.choice(
            len(evaluation.paths), size=min(SAMPLES, len(evaluation.paths)), replace=False
        ).tolist()
    )
    images = _display_images([evaluation.paths[i] for i in chosen], evaluation)
    captions, wrong = [], []
    for i in chosen:
        predicted = classes[int(proba[i].argmax())]
        captions.append(f"true {evaluation.truth[i]}\npred {predicted} {proba[i].max():.0%}")
        wrong.append(predicted != evaluation.truth[i])
    samples = gallery_png(images, captions, wrong, "sample predictions (red: wrong)")
    losses = top_losses(evaluation.truth, proba, classes, k=GALLERY_SIZE)
    loss_images = _display_images([evaluation.paths[item.index] for item in losses], evaluation)
    note = "Highest-loss images first (the most confidently wrong)."
    cams = _gradcam_overlays(
        evaluation,
        [evaluation.paths[item.index] for item in losses],
        [classes.index(item.predicted) for item in losses],
    )
    if cams is not None:
        loss_images = [overlay(image, cam) for image, cam in zip(loss_images, cams, strict=True)]
        note += " Grad-CAM overlays show where the evidence for the predicted class lies."
    else:
        note += (
            " (Grad-CAM needs a convolutional backbone with a differentiable head; not available "
            "for this run.)"
        )
    captions = [
        f"true {item.true}\npred {item.predicted} {item.confidence:.0%}\nloss {item.loss:.2f}"
        for item in losses
    ]
    gallery = gallery_png(
        loss_images, captions, [item.true != item.predicted for item in losses], "top losses"
    )
    return samples, gallery, note


def _gradcam_overlays(
    evaluation: Evaluation, paths: list[str], targets: list[int]
) -> list[np.ndarray] | None:
    import torch

    if not paths:
        return None
    try:
        parts = gradcam_model(load(evaluation.run_dir))
    except DataError:
        return None
    if parts is None:
        return None
    transform = eval_transform(evaluation.run.backbones[0].preprocessing)
    pixels = torch.stack([transform(load_image(path)) for path in paths])
    try:
        return list(gradcam(parts, pixels, targets))
    except ValueError:
        return None
