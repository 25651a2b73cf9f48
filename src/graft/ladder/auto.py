"""``--strategy auto``: the best classifier for a folder that fits a time budget.

The ladder, every rung on the same split (a tenth of train becomes the validation split
when the data has none):

1. ``probe``: the linear probe (seconds, from the feature cache);
2. ``lp-ft shallow``: LP-FT with the ``finetune`` defaults (the top 2 stages unfrozen);
3. ``lp-ft deep``: LP-FT with the top 4 stages unfrozen and their BatchNorm statistics
   adapting (what helps where the data is far from ImageNet), when the time left allows
   what the shallow run took, scaled by the deeper stages' extra cost.

A neural rung stops early when its next epoch would overrun the budget (:class:`Deadline`);
its best epoch so far is kept, and the probe, scored before the first epoch, is its floor
(:mod:`graft.training.probe`). The rung with the best validation accuracy wins (ties go to
the simpler rung). Its files become ``OUT``, with ``config.json``'s ``auto`` saying what was
chosen and why; the rungs stay in ``OUT/ladder/`` with the ladder's ``compare.html`` and
``compare.json`` on the test split (else validation).

Example:
    >>> parse_budget("10m"), parse_budget("90s"), parse_budget(30)
    (600.0, 90.0, 30.0)
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from graft.data.dataset import LabelledImages
from graft.data.prepare import DataOptions, prepare
from graft.data.splits import write_manifest
from graft.data.validate import DataReport
from graft.errors import ConfigError
from graft.fileio import atomic_path
from graft.ladder.compare import compare_runs
from graft.runs import (
    CONFIG,
    MANIFEST,
    METRICS,
    check_replaceable,
    read_config,
    remove_run,
    write_config,
)
from graft.training.callbacks import Callback, StopTraining
from graft.training.linear import LinearOptions, default_run_dir, train_linear
from graft.training.neural import CARVED_VAL, NeuralOptions, train_neural
from graft.zoo.registry import DEFAULT_BACKBONE

DEFAULT_BUDGET = "10m"
LADDER = "ladder"
#: The deep rung's epochs cost about this much more than the shallow rung's (measured on 2
#: cores: 4 unfrozen stages of efficientnet_lite0 with BatchNorm adapting vs 2).
DEEP_COST = 1.6


#: Seconds a neural run's final evaluation costs besides predicting (loading, the safeguard).
EVALUATION_SETUP = 12.0
#: Images a second the final evaluation decodes (2 cores, fp32). With :data:`VIEW_SPEED` it
#: gives the two rates measured before: 40 images a second with one view each (auto's rungs)
#: and about 12 with eight (the demo's ELPV fine-tune).
DECODE_SPEED = 60.0
#: Test-time views a second the final evaluation predicts (2 cores, fp32).
VIEW_SPEED = 120.0


def evaluation_reserve(
    images: int | float, views: int = 1, *, views_per_second: float | None = None
) -> float:
    """Seconds to keep for a neural run's final evaluation of ``images``, ``views`` each.

    The evaluation decodes each image once and predicts each of its test-time views, then
    scores the run's probe beside it (:data:`EVALUATION_SETUP`). ``views_per_second``, the
    rate this machine extracted features at (decoding included), replaces the rates measured
    on one machine (:data:`DECODE_SPEED`, :data:`VIEW_SPEED`) where it is known: a 2-core
    machine without AVX-512 ran the demo's evaluation at about half their speed.

    Example:
        >>> evaluation_reserve(400), evaluation_reserve(120, views=8)
        (22.0, 22.0)
        >>> evaluation_reserve(120, views=8, views_per_second=60.0)
        28.0
    """
    if views_per_second:
        return EVALUATION_SETUP + images * views / views_per_second
    return EVALUATION_SETUP + images / DECODE_SPEED + images * views / VIEW_SPEED


def parse_budget(budget: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"`` or ``"1h"``.

    Raises:
        ConfigError: Anything else, or a budget that is not positive.
    """
    if isinstance(budget, (int, float)):
        seconds = float(budget)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(budget))
        if match is None:
            raise ConfigError(f"--budget {budget!r} is not a duration; write e.g. 90s, 10m or 1h")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"--budget {budget!r} must be positive, e.g. 10m")
    return seconds


class Deadline(Callback):
    """Fits a run's phases into the time left before ``deadline``.

    After each epoch, a phase whose remaining epochs would overrun is **shortened** to the
    epochs that fit (at least one more), measured from its longest epoch so far and the
    longest pause between two of its epochs (checkpoints; a twentieth of an epoch until one
    is measured; when only the epoch without its pause fits, to one more): the rest of its
    learning-rate schedule is compressed into them, so the rate still decays to zero (a
    cosine cut off halfway leaves the weights at a high rate; Li et al., "Budgeted
    Training", ICLR 2020). Before each epoch, one that would still overrun ends the phase
    (:class:`StopTraining`); its cost is that of the same phase so far, else three times the
    last epoch (an unfrozen epoch costs more than a frozen one), else unknown (the first
    epoch of a run runs unless the reserve alone overruns). The same check before a phase's
    set-up spares the set-up of a phase whose first epoch would be cut. ``reserve`` seconds
    are kept for the final evaluation.

    Example:
        >>> import time
        >>> deadline = Deadline(time.monotonic() + 60)
        >>> lengths = []
        >>> deadline.on_epoch_end({"phase": "unfrozen", "record": {"seconds": 40.0},
        ...     "phase_epoch": 1, "phase_epochs": 4, "shorten_phase": lengths.append})
        >>> lengths, deadline.shortened  # 60 s left hold one more 40-s epoch, not three
        ([2], ['unfrozen from 4 to 2 epochs'])
        >>> deadline = Deadline(time.monotonic() + 30)  # not even one more: no shortening
        >>> deadline.on_epoch_end({"phase": "unfrozen", "record": {"seconds": 40.0},
        ...     "phase_epoch": 1, "phase_epochs": 4, "shorten_phase": lengths.append})
        >>> lengths, deadline.shortened
        ([2], [])
    """

    def __init__(self, deadline: float, reserve: float = 0.0) -> None:
        self.deadline = deadline
        self.reserve = reserve
        self.longest: dict[str, float] = {}
        self.last: float | None = None
        self.cut: list[str] = []
        self.shortened: list[str] = []
        self.pause: dict[str, float] = {}  # the longest pause between two epochs of a phase
        self.ended: tuple[str, float] | None = None  # the last epoch's phase and end

    def _cost(self, phase: str) -> float:
        """An epoch of ``phase`` and the pause after it, in seconds (0: unknown)."""
        epoch = self.longest.get(phase) or (3 * self.last if self.last else 0.0)
        return epoch + self.pause.get(phase, epoch / 20)

    def on_phase_begin(self, state: dict[str, Any]) -> None:
        self.ended = None  # a phase's set-up is not a pause between its epochs
        # the first epoch's own check, before the phase spends time on its set-up
        self._check(state["phase"], state["epoch"], time.monotonic())

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        phase, now = state["phase"], time.monotonic()
        if self.ended is not None and self.ended[0] == phase:
            self.pause[phase] = max(self.pause.get(phase, 0.0), now - self.ended[1])
        self._check(phase, state["epoch"], now)

    def _check(self, phase: str, epoch: int, now: float) -> None:
        """End the phase before ``epoch`` if that epoch would overrun."""
        if now + self._cost(phase) + self.reserve > self.deadline:
            self.cut.append(f"{phase} epoch {epoch + 1}")
            raise StopTraining("the time budget would be overrun")

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        record = state["record"]
        seconds = float(record["seconds"]) + float(record.get("eval_seconds", 0.0))
        phase = state["phase"]
        self.longest[phase] = max(self.longest.get(phase, 0.0), seconds)
        self.last = seconds
        now = time.monotonic()
        self.ended = (phase, now)
        done, planned = state.get("phase_epoch"), state.get("phase_epochs")
        if done is None or planned is None or done >= planned:
            return
        cost, left = self._cost(phase), self.deadline - self.reserve - now
        fit = int(left // cost) if cost > 0 else planned
        if fit == 0 and left >= self.longest[phase]:
            # one more epoch may fit, depending on the pause: if the next epoch's check lets
            # it run, it is the phase's last, its rate decaying to zero
            fit = 1
        # with no epoch left to compress the schedule into, the next epoch's check cuts it
        if 1 <= fit < planned - done:
            state["shorten_phase"](done + fit)
            self.shortened.append(f"{phase} from {planned} to {done + fit} epochs")


@dataclass
class Rung:
    """One rung of the ladder: its name, options and what it gave."""

    name: str
    strategy: str
    options: dict[str, Any]
    run_dir: Path | None = None
    val_accuracy: float | None = None
    seconds: float | None = None
    note: str = ""


@dataclass
class AutoResult:
    """What ``train_auto`` produced (the chosen run is ``run_dir`` itself)."""

    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    chosen: str
    reason: str
    rungs: list[Rung]
    report: DataReport | None
    timings: dict[str, float] = field(default_factory=dict)


def ladder(options: dict[str, Any]) -> list[Rung]:
    """The rungs, cheapest first; each takes the options that apply to its strategy.

    Example:
        >>> [rung.name for rung in ladder({"epochs": 3, "head": "svm"})]
        ['probe', 'lp-ft shallow', 'lp-ft deep']
        >>> ladder({"epochs": 3, "unfreeze": "2", "head": "svm"})[2].options
        {'epochs': 3, 'unfreeze': '4', 'bn': 'unfrozen'}
    """
    from dataclasses import fields

    linear = {f.name for f in fields(LinearOptions)}
    neural = {f.name for f in fields(NeuralOptions)} - {"strategy"}
    tuned = {k: v for k, v in options.items() if k in neural}
    return [
        Rung("probe", "linear", {k: v for k, v in options.items() if k in linear}),
        Rung("lp-ft shallow", "finetune", tuned),
        # the deep rung is defined by its depth: it overrides the shallow rung's (the CLI passes
        # every option, defaults included)
        Rung("lp-ft deep", "finetune", {**tuned, "unfreeze": "4", "bn": "unfrozen"}),
    ]


def train_auto(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]],
    *,
    out: Path | None = None,
    budget: str | float = DEFAULT_BUDGET,
    data_options: DataOptions | None = None,
    options: dict[str, Any] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    on_report: Callable[[DataReport], None] | None = None,
    on_rung: Callable[[str, str], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> AutoResult:
    """Climb the ladder within ``budget`` and keep the best rung on validation.

    Args:
        data: A folder, table, :class:`LabelledImages` or pairs.
        out: The run directory (default ``runs/<data>-auto-<time>``).
        budget: Wall-clock budget for the whole ladder (``10m``, ``90s``, seconds).
        data_options: Split and subset options.
        options: Options for the rungs (neural options apply to the LP-FT rungs).
        name: A name for data given as pairs.
        overwrite: Replace ``out`` if it is a graft run.
        on_report: Called with the data report.
        on_rung: Called with (rung, message) as the ladder goes.
        callbacks: Training-loop callbacks for the neural rungs (progress display).

    Raises:
        ConfigError: A bad budget, ``out`` exists, or no validation split (``--val 0``).
        DataError: Unusable data.
    """

    started = time.monotonic()
    budget_s = parse_budget(budget)
    deadline = started + budget_s
    if (options or {}).get("tta", "none") != "none":
        raise ConfigError(
            "--strategy auto compares its rungs without test-time augmentation; add it to the "
            "chosen run afterwards (graft evaluate/predict/serve/export --tta)"
        )
    data_options = (data_options or DataOptions()).carving(CARVED_VAL)
    report = prepare(data, data_options, name=name)
    if not report.images.split("val"):
        raise ConfigError(
            "--strategy auto chooses on a validation split and this data has none; drop "
            "--val 0 (graft then carves one from train) or pass --val 0.1"
        )
    run_dir = Path(out) if out is not None else default_run_dir(report.images.source, "auto")
    check_replaceable(run_dir, overwrite=overwrite)
    if on_report is not None:
        on_report(report)
    if overwrite and (run_dir.exists() or run_dir.is_symlink()):
        remove_run(run_dir)
    run_dir.mkdir(parents=True)
    write_config(run_dir, {"strategy": "auto", "status": "running"})  # a graft run from now on
    manifest = run_dir / LADDER / MANIFEST
    manifest.parent.mkdir()
    write_manifest(manifest, report.images.samples, report.hashes)
    evaluated = len(report.images.split("val")) + len(report.images.split("test"))
    reserve = evaluation_reserve(evaluated)  # rungs compare without test-time views

    def say(rung: str, message: str) -> None:
        if on_rung is not None:
            on_rung(rung, message)

    # the manifest holds the split and the subsets; the rungs keep the seed and the dedupe mode
    rung_data = DataOptions(seed=data_options.seed, dedupe=data_options.dedupe)
    rungs = ladder(options or {})
    shallow_seconds: float | None = None
    for rung in rungs:
        left = deadline - time.monotonic()
        if rung.strategy != "linear":
            # the first LP-FT rung starts if the final evaluation still fits: the Deadline
            # cuts its epochs, and its probe floor makes a cut run safe
            need = 0.0 if shallow_seconds is None else shallow_seconds * DEEP_COST
            if need + reserve > left:
                rung.note = (
                    f"skipped: it needs about {need + reserve:.0f} s and {max(left, 0):.0f} s "
                    "of the budget are left"
                )
                say(rung.name, rung.note)
                continue
        rung.run_dir = run_dir / LADDER / "runs" / rung.name.replace(" ", "-")
        say(rung.name, "training")
        clock = time.monotonic()
        if rung.strategy == "linear":
            result: Any = train_linear(
                manifest,
                out=rung.run_dir,
                data_options=rung_data,
                options=_linear_options(rung.options),
            )
        else:
            deadline_callback = Deadline(deadline, reserve)
            result = train_neural(
                manifest,
                out=rung.run_dir,
                data_options=rung_data,
                options=NeuralOptions(strategy=rung.strategy, **rung.options),
                # the deadline first: when it ends a phase, no progress display has started
                callbacks=[deadline_callback, *callbacks],
            )
            rung.note = "; ".join(
                [f"shortened by the budget: {text}" for text in deadline_callback.shortened]
                + [f"cut short by the budget before {text}" for text in deadline_callback.cut]
            )
        rung.seconds = time.monotonic() - clock
        if rung.strategy != "linear" and shallow_seconds is None:
            shallow_seconds = rung.seconds
        rung.val_accuracy = _held_out_accuracy(result)
        say(rung.name, f"val accuracy {100 * rung.val_accuracy:.2f} % in {rung.seconds:.0f} s")
    done = [rung for rung in rungs if rung.val_accuracy is not None]
    best = max(done, key=lambda rung: rung.val_accuracy or 0.0)  # first (simplest) on ties
    others = ", ".join(
        f"{rung.name} {100 * (rung.val_accuracy or 0.0):.2f} %" for rung in done if rung is not best
    )
    reason = f"best validation accuracy, {100 * (best.val_accuracy or 0.0):.2f} %" + (
        f" (vs {others})" if others else ""
    )
    split = "test" if report.images.split("test") else "val"

    backbone = str((options or {}).get("backbone") or _default_backbone())
    compare_runs(
        [(backbone, rung.name, rung.run_dir) for rung in done if rung.run_dir is not None],
        out=run_dir / LADDER,
        split=split,
        speed=False,  # timing inference would spend budget the ladder has not reserved
        notes=[f"{rung.name}: {rung.note}" for rung in rungs if rung.note],
    )
    assert best.run_dir is not None
    auto = {
        "chosen": best.name,
        "reason": reason,
        "budget_s": budget_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "rungs": [
            {
                "name": rung.name,
                "strategy": rung.strategy,
                "options": rung.options,
                "run_dir": str(rung.run_dir.relative_to(run_dir)) if rung.run_dir else None,
                "val_accuracy": rung.val_accuracy,
                "seconds": None if rung.seconds is None else round(rung.seconds, 1),
                "note": rung.note,
            }
            for rung in rungs
        ],
        "ladder_report": f"{LADDER}/compare.html",
    }
    carved = {"val_carved_from_train": report.carved_val} if report.carved_val else {}
    chosen_dir = best.run_dir
    if best.strategy == "linear" and report.carved_val and not report.carved_beyond_cap:
        # chosen on held-out images, the probe then learns from them too (as the LP-FT rungs'
        # kept probes do, and as the linear strategy fits on all of train)
        say(best.name, "refitting on train and the carved validation split")
        merged = run_dir / LADDER / "split-train+val.csv"
        write_manifest(
            merged,
            [replace(s, split="train") if s.split == "val" else s for s in report.images.samples],
            report.hashes,
        )
        chosen_dir = run_dir / LADDER / "runs" / "probe-refit"
        train_linear(
            merged,
            out=chosen_dir,
            data_options=rung_data,
            options=_linear_options(best.options),
        )
        auto["refit"] = "the probe, on train and the carved validation split"
    _adopt(chosen_dir, run_dir, auto, carved)
    metrics = json.loads((run_dir / METRICS).read_text())
    return AutoResult(
        run_dir,
        metrics,
        best.name,
        reason,
        rungs,
        report,
        {"total": time.monotonic() - started},
    )


def _adopt(chosen: Path, run_dir: Path, auto: dict[str, Any], data: dict[str, Any]) -> None:
    """Copy the chosen rung's files into ``run_dir``; ``config.json`` last (then complete),
    with ``auto`` and what the ladder's split carved (``data``) added."""
    for path in sorted(chosen.iterdir()):
        if path.is_file() and path.name != CONFIG:
            with atomic_path(run_dir / path.name) as tmp:
                shutil.copyfile(path, tmp)
    config = read_config(chosen)
    config.pop("format", None)
    config["data"] = {**config.get("data", {}), **data}
    write_config(run_dir, {**config, "auto": auto})


def _held_out_accuracy(result: Any) -> float:
    """A rung's validation accuracy on images it did not learn from: an LP-FT rung's probe is
    refitted on the validation split after it is kept, so its safeguard's figure counts."""
    guard = getattr(result, "safeguard", None) or {}
    if guard.get("monitor") == "val_accuracy":
        figure = guard.get("probe") if guard.get("kept") == "probe" else guard.get("trained")
        if figure is not None:
            return float(figure)
    return float(result.metrics["val"]["accuracy"])


def _linear_options(options: dict[str, Any]) -> Any:

    return LinearOptions(**options)


def _default_backbone() -> str:

    return DEFAULT_BACKBONE
