"""One call for each trained strategy (``linear``, ``head``, ``finetune``, ``scratch``), with
keyword options; :func:`graft.train` (:mod:`graft.api`) adds ``auto``.

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
from graft.training.linear import LinearOptions, RunResult, train_linear
from graft.training.loop import Callback
from graft.training.neural import NEURAL_STRATEGIES, NeuralOptions, NeuralResult, train_neural

STRATEGIES = ("linear", *NEURAL_STRATEGIES)


def split_options(
    strategy: str, options: dict[str, Any], kinds: Sequence[type[Any]], extra: Sequence[str] = ()
) -> tuple[DataOptions, dict[str, Any]]:
    """Split keyword options into the data options and the strategy's own.

    Args:
        strategy: The strategy, for messages.
        options: The keyword options given.
        kinds: The options dataclasses whose fields the strategy takes.
        extra: Further option names the strategy takes.

    Raises:
        ConfigError: An option no kind takes, with the closest name.

    Example:
        >>> data, chosen = split_options("linear", {"seed": 1, "head": "svm"}, [LinearOptions])
        >>> data.seed, chosen
        (1, {'head': 'svm'})
    """
    data_fields = {f.name for f in fields(DataOptions)}
    strategy_fields = {f.name for kind in kinds for f in fields(kind)} - {"strategy"}
    strategy_fields |= set(extra)
    unknown = sorted(set(options) - data_fields - strategy_fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(data_fields | strategy_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown option {unknown[0]!r} for strategy {strategy!r}{hint}")
    data_options = DataOptions(**{k: v for k, v in options.items() if k in data_fields})
    return data_options, {k: v for k, v in options.items() if k in strategy_fields}


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
    **options: Any,
) -> RunResult | NeuralResult:
    """Train a classifier with one strategy and write its run directory.

    Args:
        data: A folder, a CSV/TSV file, a :class:`LabelledImages` or ``(path, label)`` pairs.
        strategy: ``linear`` (default), ``head``, ``finetune`` or ``scratch``.
        out: The run directory (default ``runs/<data>-<strategy>-<time>``).
        resume: Continue an interrupted neural run (``data`` and options come from it).
        overwrite: Replace ``out`` if it exists.
        name: A name for data given as pairs.
        on_report: Called with the data validation report before any heavy work.
        progress: Feature extraction progress, ``(done, total)`` (linear).
        callbacks: Training loop callbacks (neural strategies).
        **options: Data options (:class:`DataOptions`: ``root``, ``val``, ``test``, ``seed``,
            ``per_class``, ``limit``, ``dedupe``) and strategy options
            (:class:`LinearOptions` or :class:`NeuralOptions` fields).

    Raises:
        ConfigError: Unknown strategy or option (with the closest names).
        DataError: Unusable data.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    kind = LinearOptions if strategy == "linear" else NeuralOptions
    data_options, chosen = split_options(strategy, options, [kind])
    target = Path(out) if out is not None else None
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
