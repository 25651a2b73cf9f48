"""``graft.train``: one call for every strategy, ``auto`` included, with keyword options.

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

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from graft.data.dataset import LabelledImages
from graft.data.validate import DataReport
from graft.errors import ConfigError
from graft.features.extract import ProgressCallback
from graft.ladder.auto import DEFAULT_BUDGET, AutoResult, train_auto
from graft.training import api as training
from graft.training.linear import LinearOptions, RunResult
from graft.training.loop import Callback
from graft.training.neural import NeuralOptions, NeuralResult

#: Every strategy ``graft.train`` takes: the trained ones and ``auto`` (the ladder within a
#: time budget, :mod:`graft.ladder.auto`).
ALL_STRATEGIES = (*training.STRATEGIES, "auto")


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

    Every argument is :func:`graft.training.api.train`'s, which trains one strategy; this adds:

    Args:
        strategy: ``linear`` (default), ``head``, ``finetune``, ``scratch``, or ``auto``
            (the best on validation of the probe and LP-FT rungs within ``budget``, e.g.
            ``budget="10m"``; :mod:`graft.ladder.auto`).
        on_rung: ``auto``: called with (rung, message) as the ladder goes.

    Raises:
        ConfigError: Unknown strategy or option (with the closest names).
        DataError: Unusable data.
    """
    if strategy not in ALL_STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of: {', '.join(ALL_STRATEGIES)}")
    if strategy != "auto":
        return training.train(
            data,
            strategy=strategy,
            out=out,
            resume=resume,
            overwrite=overwrite,
            name=name,
            on_report=on_report,
            progress=progress,
            callbacks=callbacks,
            **options,
        )
    data_options, chosen = training.split_options(
        "auto", options, [LinearOptions, NeuralOptions], extra=["budget"]
    )
    if resume is not None:
        raise ConfigError("--resume continues one neural run; start --strategy auto again")
    if data is None:
        raise ConfigError("no data given; pass DATA (a folder or a CSV/TSV)")
    return train_auto(
        data,
        out=Path(out) if out is not None else None,
        budget=chosen.pop("budget", DEFAULT_BUDGET),
        data_options=data_options,
        options=chosen,
        name=name,
        overwrite=overwrite,
        on_report=on_report,
        on_rung=on_rung,
        callbacks=callbacks,
    )
