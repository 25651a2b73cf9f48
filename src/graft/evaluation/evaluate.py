"""``graft evaluate``: a run's metrics on its own splits or on another labelled set, and its report.

Example:
    >>> result = evaluate("runs/cats-vs-dogs", split="val")  # doctest: +SKIP
    >>> result["accuracy"], result["intervals"]["accuracy"]  # doctest: +SKIP
    (0.992, [0.986, 0.997])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graft.data.dataset import read_labelled
from graft.data.scan import FileIndex, default_index_path
from graft.errors import ConfigError, DataError
from graft.evaluation.result import Evaluation
from graft.evaluation.run_report import write_run_report
from graft.metrics import classification_metrics
from graft.predictor import load
from graft.runs import MANIFEST, RunConfig, predictions_file, read_config, read_predictions


def evaluate(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    split: str | None = None,
    root: Path | None = None,
    report: bool = False,
    tta: str | None = None,
) -> dict[str, Any]:
    """Return the metrics of a run (the fields of ``graft evaluate --json``).

    Args:
        run_dir: A run directory.
        data: Another labelled folder or table to evaluate on; its class names must be among
            the run's. Without it, the run's own saved predictions are used.
        split: ``val`` or ``test``. Without ``data``: which of the run's splits (default
            ``test`` when the run has one, else ``val``). With ``data``: evaluate only that split
            of it (default: every image).
        root: For a CSV/TSV ``data``, the folder its paths are relative to.
        report: Also write ``report.html`` into the run directory (its path is in ``report``).
        tta: Test-time augmentation (``none``, ``flip``, ``dihedral``; :mod:`graft.tta`).
            Given, the run predicts again (on its own split manifest when ``data`` is not
            given).

    Raises:
        ConfigError: Unknown split, or a split the run did not evaluate.
        DataError: Unreadable data, or class names the run does not know.
    """
    evaluation = evaluate_run(run_dir, data=data, split=split, root=root, tta=tta)
    result = evaluation.to_json()
    result["tta"] = tta or evaluation.run.tta
    if report:
        result["report"] = str(write_run_report(evaluation))
    return result


def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    split: str | None = None,
    root: Path | None = None,
    tta: str | None = None,
) -> Evaluation:
    """Predictions and metrics of a run (see :func:`evaluate`)."""
    folder = Path(run_dir)
    config = read_config(folder)
    if split is not None and split not in ("val", "test"):
        raise ConfigError(f"split {split!r} is not one of: val, test")
    if data is None and tta is None:
        return _from_saved(folder, config, split)
    if data is None:  # predict the run's own split again, with the test-time augmentation
        saved = _from_saved(folder, config, split)
        return _on_data(folder, config, folder / MANIFEST, saved.split, root, tta)
    return _on_data(folder, config, Path(data), split, root, tta)


def saved_splits(folder: Path) -> list[str]:
    """The splits a run saved predictions for, the one evaluated by default first.

    Example:
        >>> saved_splits(Path("no-such-run"))
        []
    """
    return [name for name in ("test", "val") if (folder / predictions_file(name)).is_file()]


def _from_saved(folder: Path, config: dict[str, Any], split: str | None) -> Evaluation:
    available = saved_splits(folder)
    if not available:
        raise DataError(
            f"{folder}: the run evaluated no split; evaluate it on data with --data DATA"
        )
    chosen = split or available[0]
    if chosen not in available:
        raise ConfigError(
            f"{folder}: the run has no {chosen} split (it has {', '.join(sorted(available))}); "
            "pick one of those, or pass --data"
        )
    paths, truth, proba, classes = read_predictions(folder / predictions_file(chosen))
    metrics = classification_metrics(truth, proba, classes)
    source = RunConfig.from_dict(config).data.source
    return Evaluation(folder, config, chosen, source, paths, truth, proba, classes, metrics)


def _on_data(
    folder: Path,
    config: dict[str, Any],
    data: Path,
    split: str | None,
    root: Path | None,
    tta: str | None = None,
) -> Evaluation:

    images = read_labelled(data, root=root)
    samples = images.samples
    if split is not None:
        if not images.has_splits:
            raise ConfigError(f"{data} has no splits; drop --split to evaluate on every image")
        samples = [sample for sample in samples if sample.split == split]
        if not samples:
            raise DataError(f"{data} has no {split} split")
    classes = RunConfig.from_dict(config).classes
    unknown = sorted({sample.label for sample in samples} - set(classes))
    if unknown:
        raise DataError(
            f"{data}: classes {', '.join(unknown)} are not classes of the run "
            f"({', '.join(classes)}); rename the folders/labels to the run's class names"
        )
    index = FileIndex(default_index_path())
    try:
        infos = index.scan([sample.path for sample in samples])
    finally:
        index.close()
    usable = [(s, i.content_hash) for s, i in zip(samples, infos, strict=True) if i.problem is None]
    problems = sum(1 for i in infos if i.problem is not None)
    predictor = load(folder, tta=tta)
    proba, ok, failures = predictor.predict_files(
        [s.path for s, _ in usable], [h for _, h in usable]
    )
    kept = [s for (s, _), flag in zip(usable, ok, strict=True) if flag]
    truth = [s.label for s in kept]
    metrics = classification_metrics(truth, proba[ok], classes)
    return Evaluation(
        folder,
        config,
        split or "all",
        str(data),
        [str(s.path) for s in kept],
        truth,
        proba[ok],
        classes,
        metrics,
        skipped=problems + len(failures),
    )
