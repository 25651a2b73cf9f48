"""The run directory, shared by every strategy (:mod:`graft.predictor` loads it).

A run directory describes itself; nothing else is needed to use it::

    RUN_DIR/
      config.json           backbone, weight hash, preprocessing, classes, strategy, head and
                            its chosen hyperparameters, seed, data fingerprint, split counts,
                            library versions, timings
      head.safetensors      the classic head's arrays (linear strategy; never a pickle)
      metrics.json          metrics per evaluated split
      predictions_val.csv   path, true, predicted, one probability column per class
      predictions_test.csv
      split.csv             the split manifest: path, label, split, content hash
      skipped.csv           files left out, with the reason
      model.safetensors     (neural strategies) the trained network
      history.json          (neural strategies) per-epoch losses, metrics, rates

A linear run is written into a temporary folder beside ``RUN_DIR`` and renamed into place at
the end, so an interrupted run never leaves a half-written run directory; a neural run writes
its files atomically as it trains and says ``"status": "running"`` until it is complete.

Example:
    >>> import graft
    >>> predictor = graft.load("runs/cats-vs-dogs")  # doctest: +SKIP
    >>> predictor.predict(["cat.jpg"])[0].label  # doctest: +SKIP
    'cats'
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from graft.errors import ConfigError, DataError
from graft.faults import fault_point
from graft.fileio import atomic_path, current_umask, write_json_atomic

CONFIG = "config.json"
METRICS = "metrics.json"
HEAD = "head.safetensors"
MANIFEST = "split.csv"
SKIPPED = "skipped.csv"
MODEL = "model.safetensors"
HISTORY = "history.json"
CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
REPORT = "report.html"
EXPORTS = {"onnx": "model.onnx", "int8": "model.int8.onnx", "torchscript": "model.torchscript.pt"}
RUN_FORMAT = 1


def predictions_file(split: str) -> str:
    """Return the file name of a split's predictions."""
    return f"predictions_{split}.csv"


def is_graft_run(path: Path) -> bool:
    """Whether ``path`` is a folder that graft wrote as a run (its ``config.json`` says so).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> is_graft_run(folder)
        False
        >>> write_config(folder, {"strategy": "linear"})
        >>> is_graft_run(folder)
        True
    """
    config = Path(path) / CONFIG
    if Path(path).is_symlink() or not config.is_file() or config.is_symlink():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "format" in data and "strategy" in data


def check_replaceable(out: Path, *, overwrite: bool, resume_hint: bool = False) -> None:
    """Refuse to write a run to ``out`` unless it is new, or an old graft run to replace.

    ``--overwrite`` only ever replaces a folder that graft wrote as a run: a data folder, a
    home directory or any other file is refused, naming it, whatever the flag says.

    Raises:
        ConfigError: ``out`` exists and may not be replaced.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        also = ", or --resume it" if resume_hint else ""
        raise ConfigError(
            f"{out} already exists; pass --overwrite to replace it, choose another --out{also}"
        )
    if out.is_symlink():
        raise ConfigError(
            f"{out} is a symbolic link; graft replaces only a run folder itself: choose "
            "another --out"
        )
    if not is_graft_run(out):
        raise ConfigError(
            f"{out} exists and is not a graft run (no graft config.json in it); --overwrite "
            "only replaces a run graft wrote: choose another --out"
        )


def remove_run(out: Path) -> None:
    """Delete a graft run folder, after checking that it is one (never anything else).

    The folder is first renamed aside in one step, so a crash leaves either the old run or
    nothing, never a half-deleted one under its name.

    Raises:
        ConfigError: ``out`` is not a graft run.
    """
    check_replaceable(out, overwrite=True)
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, trash / "run")
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staged_run_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block succeeds.

    ``out`` may be replaced only if it is a graft run and ``overwrite`` is true
    (:func:`check_replaceable`); it is checked again just before the swap.

    Raises:
        ConfigError: ``out`` exists and may not be replaced.
    """
    check_replaceable(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; runs get the usual mode
    try:
        yield staging
        fault_point("linear.before-rename")
        if out.exists() or out.is_symlink():
            check_replaceable(out, overwrite=overwrite)
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / "run")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_skipped(path: Path, problems: Sequence[tuple[Path, str]]) -> None:
    """Write ``skipped.csv``: every file left out of a run, with the reason (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows([str(file), reason] for file, reason in problems)


def write_predictions(
    path: Path,
    paths: Sequence[Path],
    truth: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
) -> None:
    """Write a predictions CSV: path, true, predicted, then a probability column per class.

    Written atomically: a reader or a crash sees the old file or the new one, and a symbolic
    link planted at ``path`` is replaced, never followed.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", *(f"p_{name}" for name in classes)])
        for file, label, row in zip(paths, truth, proba, strict=True):
            writer.writerow(
                [str(file), label, classes[int(np.argmax(row))], *(f"{p:.6f}" for p in row)]
            )


def read_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Read a predictions CSV back: (paths, true labels, probabilities, classes)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    classes = [name.removeprefix("p_") for name in header[3:]]
    proba = np.array([[float(v) for v in row[3:]] for row in body], dtype=np.float64).reshape(
        len(body), len(classes)
    )
    return [row[0] for row in body], [row[1] for row in body], proba, classes


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read a run's ``config.json``.

    Raises:
        DataError: ``run_dir`` is not a graft run directory.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DataError(
            f"{run_dir}: not a graft run directory (no {CONFIG}); pass the folder that "
            "`graft train` wrote"
        )
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt run configuration ({err})") from err
    if config.get("format", 0) > RUN_FORMAT:
        raise DataError(
            f"{run_dir}: written by a newer graft (format {config['format']}); upgrade graft"
        )
    return config


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` atomically."""
    write_json_atomic(run_dir / CONFIG, {"format": RUN_FORMAT, **config})
