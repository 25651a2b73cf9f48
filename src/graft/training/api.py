"""``graft.train``: one call for every strategy, with keyword options.

Example:
    >>> from graft.datasets import elpv
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> pairs = elpv("binary")[:200]
    >>> result = train(pairs, strategy="linear", out=out, val=0.0, test=0.25, name="elpv")
    >>> sorted(result.metrics)
    ['test']
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from graft.data.dataset import LabelledImages
from graft.data.prepare import DataOptions
from graft.data.validate import DataReport
from graft.errors import ConfigError
from graft.features.extract import ProgressCallback
from graft.training.auto import AutoResult
from graft.training.linear import LinearOptions, RunResult, train_linear
from graft.training.loop import Callback
from graft.training.neural import NEURAL_STRATEGIES, NeuralOptions, NeuralResult, train_neural

STRATEGIES = ("linear", *NEURAL_STRATEGIES)
#: Every strategy ``graft.train`` takes: the trained ones and ``auto`` (the ladder within a
#: time budget, :mod:`graft.training.auto`).
ALL_STRATEGIES = (*STRATEGIES, "auto")


def train(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]] | None = None,
    *,
    strategy: str = "linear",
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    name: str | None = None,
    on_report: Callable[[DataReport], None] | None = None,
    progress: ProgressCallback | None = None,
    callbacks: Sequence[Callback] = (),
    on_rung: Callable[[str, str], None] | None = None,
    **options: Any,
) -> RunResult | NeuralResult | AutoResult:
    """Train a classifier with any strategy and write its run directory.

    Args:
        data: A folder, a CSV/TSV file, a :class:`LabelledImages` or ``(path, label)`` pairs.
        strategy: ``linear`` (default), ``head``, ``finetune``, ``scratch``, or ``auto``
            (the best on validation of the probe and LP-FT rungs within ``budget``, e.g.
            ``budget="10m"``; :mod:`graft.training.auto`).
        out: The run directory (default ``runs/<data>-<strategy>-<time>``).
        resume: Continue an interrupted neural run (``data`` and options come from it).
        overwrite: Replace ``out`` if it exists.
        name: A name for data given as pairs.
        on_report: Called with the data validation report before any heavy work.
        progress: Feature extraction progress, ``(done, total)`` (linear).
        callbacks: Training loop callbacks (neural strategies).
        on_rung: ``auto``: called with (rung, message) as the ladder goes.
        **options: Data options (:class:`DataOptions`: ``root``, ``val``, ``test``, ``seed``,
            ``per_class``, ``limit``, ``dedupe``) and strategy options
            (:class:`LinearOptions` or :class:`NeuralOptions` fields).

    Raises:
        ConfigError: Unknown strategy or option (with the closest names).
        DataError: Unusable data.
    """
    if strategy not in ALL_STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of: {', '.join(ALL_STRATEGIES)}")
    kinds: dict[str, list[type[Any]]] = {
        "linear": [LinearOptions],
        "auto": [LinearOptions, NeuralOptions],
    }
    data_fields = {f.name for f in fields(DataOptions)}
    strategy_fields = {
        f.name for kind in kinds.get(strategy, [NeuralOptions]) for f in fields(kind)
    } - {"strategy"}
    if strategy == "auto":
        strategy_fields.add("budget")
    unknown = sorted(set(options) - data_fields - strategy_fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(data_fields | strategy_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown option {unknown[0]!r} for strategy {strategy!r}{hint}")
    data_options = DataOptions(**{k: v for k, v in options.items() if k in data_fields})
    chosen = {k: v for k, v in options.items() if k in strategy_fields}
    target = Path(out) if out is not None else None
    if strategy == "auto":
        from graft.training.auto import DEFAULT_BUDGET, train_auto

        if resume is not None:
            raise ConfigError("--resume continues one neural run; start --strategy auto again")
        if data is None:
            raise ConfigError("no data given; pass DATA (a folder or a CSV/TSV)")
        return train_auto(
            data,
            out=target,
            budget=chosen.pop("budget", DEFAULT_BUDGET),
            data_options=data_options,
            options=chosen,
            name=name,
            overwrite=overwrite,
            on_report=on_report,
            on_rung=on_rung,
            callbacks=callbacks,
        )
    if strategy == "linear":
        if resume is not None:
            raise ConfigError(
                "--resume applies to neural strategies; a linear run takes seconds to redo"
            )
        if data is None:
            raise ConfigError("no data given; pass DATA (a folder or a CSV/TSV)")
        return train_linear(
            data,
            out=target,
            data_options=data_options,
            options=LinearOptions(**chosen),
            name=name,
            overwrite=overwrite,
            on_report=on_report,
            progress=progress,
        )
    return train_neural(
        data,
        out=target,
        data_options=data_options,
        options=NeuralOptions(strategy=strategy, **chosen),
        name=name,
        overwrite=overwrite,
        resume=Path(resume) if resume is not None else None,
        on_report=on_report,
        callbacks=callbacks,
    )
