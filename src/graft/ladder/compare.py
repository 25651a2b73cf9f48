"""``graft compare``: the ladder of strategies and backbones on identical splits, side by side.

Every run trains from the same split manifest (``DIR/split.csv``), reusing cached features
wherever it can, and is evaluated on the same images (the test split, else validation). The
comparison reports accuracy, macro-F1 and ROC AUC with 95 % bootstrap intervals, training time,
inference speed, trainable and total parameters, and McNemar's exact test of the best run
against each other run on the same images. An interrupted comparison resumes: finished runs are
not redone, an interrupted neural run continues from its last epoch.

Example:
    >>> parse_imagenet_map("cats=281-285,dogs=151-268+275")["dogs"][-1]
    275
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graft.classification import imagenet_probabilities
from graft.data.dataset import read_labelled
from graft.data.prepare import DataOptions, prepare
from graft.data.splits import write_manifest
from graft.data.validate import DataReport
from graft.errors import ConfigError, DataError
from graft.evaluation.evaluate import evaluate_run
from graft.fileio import write_json_atomic
from graft.heads import ClassicHead
from graft.ladder.compare_report import write_compare_report
from graft.ladder.comparison import COMPARE_JSON, Comparison, Row
from graft.metrics import classification_metrics, roc_auc
from graft.models import ProbeNetwork, TransferModel, load_run_model
from graft.predictor import load
from graft.ranking.rank import rank
from graft.runs import CONFIG, HEAD, HISTORY, MANIFEST, RunConfig, Timings, read_run_config
from graft.training.api import STRATEGIES, train
from graft.training.linear import LinearOptions
from graft.training.neural import CARVED_VAL, NeuralOptions
from graft.training.stages import backbone_stages
from graft.zoo.registry import get_backbone

SPEED_SAMPLE = 128


def parse_imagenet_map(text: str) -> dict[str, list[int]]:
    """Parse ``class=281-285,other=151-268+275`` into ImageNet class indices per class.

    Raises:
        ConfigError: Malformed text or indices outside 0..999.
    """
    mapping: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, spans = part.partition("=")
        indices: list[int] = []
        try:
            for span in spans.split("+"):
                low, _, high = span.partition("-")
                indices.extend(range(int(low), int(high or low) + 1))
        except ValueError as err:
            raise ConfigError(
                f"--imagenet-map {part!r}: expected class=FIRST-LAST[+MORE], e.g. cats=281-285"
            ) from err
        if not name.strip() or not indices or min(indices) < 0 or max(indices) > 999:
            raise ConfigError(f"--imagenet-map {part!r}: indices must be ImageNet classes 0..999")
        mapping[name.strip()] = indices
    return mapping


def compare(
    data: str | Path | None,
    *,
    out: Path,
    strategies: Sequence[str] = ("linear", "head", "finetune", "scratch"),
    backbones: Sequence[str] = ("efficientnet_lite0.in1k",),
    imagenet_map: dict[str, list[int]] | None = None,
    data_options: DataOptions | None = None,
    train_options: dict[str, Any] | None = None,
    on_report: Callable[[DataReport], None] | None = None,
    on_run: Callable[[str, str, str], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> Comparison:
    """Train (or resume) every strategy x backbone on one split and compare them.

    Args:
        data: The labelled data (``None`` to resume a comparison in ``out``).
        out: The comparison folder: ``split.csv``, ``runs/``, ``compare.json``, ``compare.html``.
        strategies: Strategies to run.
        backbones: Backbones to run them on.
        imagenet_map: Class name to ImageNet indices, for the zero-training ImageNet row.
        data_options: Split options (used only when the comparison starts).
        train_options: Options for the neural strategies (epochs, augment, ...); linear
            runs take the ones that apply to them.
        on_report: Called with the data report when the split is made.
        on_run: Called with (backbone, strategy, "skipped" | "resumed" | "training").
        callbacks: Training-loop callbacks for the neural runs.

    Raises:
        ConfigError: Unknown strategy, or no split to evaluate on.
        DataError: Unusable data.
    """

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(
            f"--strategies {','.join(strategies)}: each must be one of {', '.join(STRATEGIES)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    if not manifest.is_file():
        if data is None:
            raise ConfigError(f"{out} holds no comparison to resume; pass DATA")

        # every strategy trains on the same images: the validation split the neural ones would
        # carve from train is carved once, here
        report = prepare(data, (data_options or DataOptions()).carving(CARVED_VAL))
        if on_report is not None:
            on_report(report)
        write_manifest(manifest, report.images.samples, report.hashes)
    counts = prepare(manifest).images.counts()
    split = "test" if "test" in counts else "val" if "val" in counts else None
    if split is None:
        raise ConfigError(
            "a comparison needs a validation or test split: pass --val 0.2 or --test 0.2"
        )
    backbones = _resolve_backbones(backbones, manifest, out, train_options or {})
    rows: list[Row] = []
    notes: list[str] = []
    truth: list[str] = []
    classes: list[str] = []
    for backbone in backbones:
        for strategy in strategies:
            run_dir = out / "runs" / f"{backbone.replace('/', '_')}-{strategy}"
            _train_or_resume(
                manifest, run_dir, backbone, strategy, train_options or {}, on_run, callbacks
            )
            row, truth, classes = _row(run_dir, backbone, strategy, split)
            rows.append(row)
        imagenet = _imagenet_row(manifest, backbone, split, imagenet_map, classes, notes)
        if imagenet is not None:
            rows.append(imagenet)
    return _write(Comparison(out, split, classes, rows, _mcnemar(rows), notes, truth))


def compare_runs(
    runs: Sequence[tuple[str, str, Path]],
    *,
    out: Path,
    split: str,
    notes: Sequence[str] = (),
    speed: bool = True,
) -> Comparison:
    """Compare runs already trained on one split manifest; write ``compare.json``/``.html``.

    Args:
        runs: ``(backbone, strategy label, run directory)``, in the order to show them.
        out: The folder for the reports.
        split: The split every run is evaluated on (``test`` or ``val``).
        notes: Lines for the report.
        speed: Measure each run's inference speed (``False``: the column stays empty).

    Raises:
        DataError: The runs were evaluated on different images.

    Example:
        >>> compare_runs([], out=Path("x"), split="test")  # doctest: +SKIP
    """
    rows: list[Row] = []
    truth: list[str] = []
    classes: list[str] = []
    for backbone, label, run_dir in runs:
        row, truth, classes = _row(run_dir, backbone, label, split, speed=speed)
        rows.append(row)
    return _write(Comparison(out, split, classes, rows, _mcnemar(rows), list(notes), truth))


def _write(comparison: Comparison) -> Comparison:

    write_json_atomic(comparison.out / COMPARE_JSON, comparison.to_json())
    write_compare_report(comparison)
    return comparison


def _resolve_backbones(
    backbones: Sequence[str], manifest: Path, out: Path, options: dict[str, Any]
) -> list[str]:
    """``topN`` ranks every available backbone on the training split (``graft rank``), once:
    the ranking is kept in ``OUT/ranking.json`` so a resumed comparison runs the same ones."""
    import re

    match = re.fullmatch(r"top(\d+)", backbones[0]) if len(backbones) == 1 else None
    if match is None:
        return list(backbones)
    saved = out / "ranking.json"
    if saved.is_file():
        ranking = json.loads(saved.read_text())
    else:
        ranking = rank(manifest, engine=str(options.get("engine", "auto"))).to_dict()
        write_json_atomic(saved, ranking)
    names = [c["backbone"] for c in ranking["candidates"] if c["layer"] == "final"]
    return names[: int(match.group(1))]


def _train_or_resume(
    manifest: Path,
    run_dir: Path,
    backbone: str,
    strategy: str,
    options: dict[str, Any],
    on_run: Callable[[str, str, str], None] | None,
    callbacks: Sequence[Any],
) -> None:

    config = read_run_config(run_dir) if (run_dir / CONFIG).is_file() else None
    if config is not None and config.status == "complete":
        if on_run is not None:
            on_run(backbone, strategy, "skipped")
        return
    if config is not None:
        if on_run is not None:
            on_run(backbone, strategy, "resumed")
        train(strategy=strategy, resume=run_dir, callbacks=callbacks)
        return
    if on_run is not None:
        on_run(backbone, strategy, "training")
    kind = LinearOptions if strategy == "linear" else NeuralOptions
    allowed = set(kind.__dataclass_fields__) - {"strategy", "backbone"}
    chosen = {k: v for k, v in options.items() if k in allowed}
    train(
        manifest,
        strategy=strategy,
        out=run_dir,
        overwrite=True,
        backbone=backbone,
        callbacks=callbacks,
        **chosen,
    )


def _row(
    run_dir: Path, backbone: str, strategy: str, split: str, *, speed: bool = True
) -> tuple[Row, list[str], list[str]]:
    import json

    evaluation = evaluate_run(run_dir, split=split)
    order = np.argsort(evaluation.paths, kind="stable")
    paths = [evaluation.paths[i] for i in order]
    truth = [evaluation.truth[i] for i in order]
    proba = evaluation.probabilities[order]
    y = np.array([evaluation.classes.index(label) for label in truth])
    run = evaluation.run
    history_file = run_dir / HISTORY
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    trainable, total = _parameters(run_dir, run)
    row = Row(
        backbone=backbone,
        strategy=strategy,
        run_dir=str(run_dir),
        metrics=evaluation.metrics,
        roc_auc_interval=_auc_interval(y, proba, len(evaluation.classes)),
        train_seconds=_train_seconds(run.timings, history),
        images_per_second=_inference_speed(run_dir, paths) if speed else None,
        trainable_params=trainable,
        total_params=total,
        correct=proba.argmax(1) == y,
        probabilities=proba,
        history=history,
    )
    return row, truth, evaluation.classes


def _train_seconds(timings: Timings, history: list[dict[str, Any]]) -> float | None:
    if history:
        return float(sum(entry["seconds"] + entry.get("eval_seconds", 0.0) for entry in history))
    return timings.total_s


def _parameters(run_dir: Path, run: RunConfig) -> tuple[int | None, int | None]:
    """(trained, total) parameter counts of the run's network (:func:`graft.models.load_run_model`).

    A linear run trains only its head's coefficients and intercepts (a k-NN or centroid head
    stores references instead: 0); a neural run trains its head and the stages its last phase
    unfroze.
    """
    model = load_run_model(run_dir, run)
    network = model.network
    total = sum(p.numel() for p in model.parameters())
    if isinstance(network, ProbeNetwork):
        head = ClassicHead.load(run_dir / HEAD)
        fitted = sum(int(head.arrays[k].size) for k in ("coef", "intercept") if k in head.arrays)
        return fitted, total + fitted
    assert isinstance(network, TransferModel)
    top = run.phases[-1].top
    stages = backbone_stages(network.backbone.net)
    names = (
        {name for stage in stages[len(stages) - top :] for name in stage.parameter_names}
        if top
        else set()
    )
    trainable = sum(p.numel() for p in network.head.parameters())
    trainable += sum(p.numel() for n, p in network.backbone.net.named_parameters() if n in names)
    return trainable, total


def _inference_speed(run_dir: Path, paths: list[str]) -> float | None:
    """Images per second of ``graft.load(run).predict`` (decode, preprocess, model)."""

    sample = paths[:SPEED_SAMPLE]
    if not sample:
        return None
    predictor = load(run_dir)
    predictor.predict(sample[:8])  # builds the engine (conversion is not inference)
    start = time.perf_counter()
    predictor.predict(sample)
    return len(sample) / (time.perf_counter() - start)


def _auc_interval(
    y: np.ndarray, proba: np.ndarray, n_classes: int, samples: int = 500, seed: int = 0
) -> list[float] | None:
    """Percentile bootstrap 95 % interval of the (macro one-vs-rest) ROC AUC."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        draw = rng.integers(0, len(y), len(y))
        value = roc_auc(y[draw], proba[draw], n_classes)["macro"]
        if value is not None:
            values.append(value)
    if not values:
        return None
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _imagenet_row(
    manifest: Path,
    backbone: str,
    split: str,
    mapping: dict[str, list[int]] | None,
    classes: list[str],
    notes: list[str],
) -> Row | None:
    """The zero-training row: the ImageNet head's probabilities summed per mapped class."""

    record = get_backbone(backbone)
    if record.labels != "imagenet-1k":
        notes.append(f"{backbone}: no ImageNet head, so no zero-training ImageNet row")
        return None
    if mapping is None:
        notes.append(
            f"{backbone}: the zero-training ImageNet classifier is left out; map the classes to "
            "ImageNet classes with --imagenet-map (e.g. cats=281-285,dogs=151-268) to include it"
        )
        return None
    missing = sorted(set(classes) - set(mapping))
    if missing:
        raise ConfigError(f"--imagenet-map gives no ImageNet classes for {', '.join(missing)}")
    samples = sorted(
        (s for s in read_labelled(manifest).samples if s.split == split), key=lambda s: str(s.path)
    )
    start = time.perf_counter()
    full = imagenet_probabilities([s.path for s in samples], backbone=backbone)
    seconds = time.perf_counter() - start
    proba = np.column_stack([full[:, mapping[name]].sum(axis=1) for name in classes])
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    truth = [s.label for s in samples]
    y = np.array([classes.index(label) for label in truth])
    return Row(
        backbone=backbone,
        strategy="imagenet (no training)",
        run_dir=None,
        metrics=classification_metrics(truth, proba, classes),
        roc_auc_interval=_auc_interval(y, proba, len(classes)),
        train_seconds=0.0,
        images_per_second=len(samples) / seconds if seconds else None,
        trainable_params=0,
        total_params=record.params,
        correct=proba.argmax(1) == y,
        probabilities=proba,
    )


def _mcnemar(rows: list[Row]) -> list[dict[str, Any]]:
    """McNemar's exact test of the best run against every other, on the same images."""
    from scipy.stats import binomtest

    if len(rows) < 2:
        return []
    best = max(rows, key=lambda row: row.metrics["accuracy"])
    results = []
    for row in rows:
        if row is best:
            continue
        if len(row.correct) != len(best.correct):
            raise DataError("compared runs were evaluated on different images")
        only_best = int((best.correct & ~row.correct).sum())
        only_other = int((~best.correct & row.correct).sum())
        discordant = only_best + only_other
        p = (
            float(binomtest(min(only_best, only_other), discordant, 0.5).pvalue)
            if discordant
            else 1.0
        )
        results.append(
            {
                "best": best.name,
                "other": row.name,
                "best_right_other_wrong": only_best,
                "best_wrong_other_right": only_other,
                "p_value": p,
            }
        )
    return results
