"""The neural strategies: a new head on a frozen base, fine-tuning, and training from scratch.

* ``head``: the backbone frozen (BatchNorm in inference mode), a new head trained with
  augmentation.
* ``finetune``: ``head`` for ``freeze_epochs``, then the top ``unfreeze`` stages are unfrozen and
  trained with discriminative learning rates (fastai's ``fine_tune``).
* ``scratch``: the same architecture from random weights, same data, budget and augmentation:
  the baseline that shows what transfer buys.

The run directory is written as training goes (``config.json`` says ``running``, then
``complete``): ``checkpoint_last.pt`` after every epoch and ``checkpoint_best.pt`` when the
monitored metric improves, both atomically, so ``graft train --resume RUN_DIR`` continues after a
kill with the same schedule, optimizer state, unfreeze state and data order. At the end the best
weights become ``model.safetensors`` and the splits are evaluated as for every strategy.

Example:
    >>> options = NeuralOptions(strategy="finetune", epochs=4, freeze_epochs=1, unfreeze="2")
    >>> [(p.name, p.epochs, p.top) for p in plan_phases(options, stage_count=8)]
    [('head', 1, 0), ('unfrozen', 3, 2)]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from graft.auditing.leakage import apply_near_copies, find_near_copies
from graft.data.dataset import LabelledImages, Sample
from graft.data.prepare import DataOptions, prepare
from graft.data.validate import DataReport
from graft.errors import ConfigError
from graft.runs import MANIFEST, METRICS, check_replaceable, read_run_config
from graft.training.callbacks import Callback
from graft.training.distributed import from_environment
from graft.training.finishing import finish_run
from graft.training.linear import default_run_dir
from graft.training.options import (
    BN_MODES,
    CARVED_VAL,
    NEURAL_STRATEGIES,
    NeuralOptions,
    NeuralResult,
    plan_phases,
    resolve_precision,
)
from graft.training.preflight import preflight
from graft.training.trainer import Trainer

__all__ = [
    "BN_MODES",
    "CARVED_VAL",
    "NEURAL_STRATEGIES",
    "NeuralOptions",
    "NeuralResult",
    "plan_phases",
    "resolve_precision",
    "train_neural",
]


def train_neural(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]] | None,
    *,
    out: str | Path | None = None,
    data_options: DataOptions | None = None,
    options: NeuralOptions | None = None,
    name: str | None = None,
    overwrite: bool = False,
    resume: Path | None = None,
    on_report: Callable[[DataReport], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> NeuralResult:
    """Train with a neural strategy, or resume a run, and write its run directory.

    Args:
        data: A folder, table, :class:`LabelledImages` or pairs (``None`` with ``resume``).
        out: The run directory (default ``runs/<data>-<strategy>-<time>``).
        data_options: Split and subset options.
        options: Strategy, model and loop options.
        name: A name for data given as pairs.
        overwrite: Replace ``out`` if it exists.
        resume: A run directory to continue (its own options and split are used).
        on_report: Called with the validation report before training.
        callbacks: Loop callbacks (progress display, ...).

    Raises:
        DataError: Unusable data.
        ConfigError: Bad options, ``out`` exists, or nothing to resume.
    """

    started = time.perf_counter()
    context = from_environment()
    if resume is not None:
        run_dir = Path(resume)
        run = read_run_config(run_dir)
        if not run.neural:
            raise ConfigError(f"{run_dir}: a {run.strategy} run has no epochs to resume")
        if run.status == "complete":
            raise ConfigError(f"{run_dir}: this run is complete; nothing to resume")
        config = run.raw
        options = NeuralOptions.from_run(run)  # an older run resumes as it started
        data_options = DataOptions(**{**run.data.options, "root": None})
        report = prepare(run_dir / MANIFEST, DataOptions(seed=data_options.seed))
        # split.csv already holds the data after fixes and drops; keep the record of them
        stored = run.data.cleaning
        report.near_duplicates = stored.get("near_duplicates_across_splits", {})
        report.fixes = stored.get("fixes", {})
        report.dropped = [Sample(Path(path), "") for path in stored.get("dropped", [])]
        report.carved_val = float(stored.get("val_carved_from_train", 0.0))
        # a run written before the flag was recorded: capped runs carved beyond their cap
        report.carved_beyond_cap = bool(
            stored.get("val_carved_beyond_cap", bool(report.carved_val) and data_options.capped)
        )
    else:
        options = options or NeuralOptions()
        data_options = data_options or DataOptions()
        options.validate()
        data_options = data_options.carving(CARVED_VAL)
        if data is None:
            raise ConfigError("no data given; pass DATA, or --resume RUN_DIR")
        report = prepare(data, data_options, name=name)
        run_dir = context.broadcast(  # every process writes to rank 0's choice
            Path(out)
            if out is not None
            else default_run_dir(report.images.source, options.strategy)
        )
        check_replaceable(run_dir, overwrite=overwrite, resume_hint=True)
        # rank 0 decides which near-copies to drop, so every process trains on the same images
        found = (
            find_near_copies(report, dedupe=str(data_options.dedupe)) if context.is_main else None
        )
        apply_near_copies(report, context.broadcast(found))
        config = {}
    trainer = Trainer(
        run_dir,
        report,
        options,
        data_options,
        config,
        callbacks if context.is_main else (),
        context,
    )
    if resume is None and options.strategy != "scratch":
        train_paths = [sample.path for sample in report.images.split("train")]
        report.warnings.extend(preflight(train_paths, trainer.model.record))
    if on_report is not None and context.is_main:
        on_report(report)
    if resume is None:
        context.barrier()  # every process has checked the run directory before it is made
        if context.is_main:
            trainer.start(overwrite=overwrite)
    context.barrier()
    history = trainer.fit()
    identical = context.identical(trainer.model)
    metrics: dict[str, dict[str, Any]] = {}
    if trainer.finished:
        if context.is_main:
            metrics = finish_run(trainer, parameters_identical=identical)
        context.barrier()
        if not context.is_main:
            metrics = json.loads((run_dir / METRICS).read_text())
    return NeuralResult(
        run_dir,
        metrics,
        history,
        report,
        {"total": time.perf_counter() - started},
        trainer.safeguard,
    )
