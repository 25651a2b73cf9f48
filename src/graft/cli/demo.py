"""``graft demo``: what graft does, end to end, on data that installs with it (no network).

The demo is a list of steps, each a function that prints its part and returns a short summary
line; later capabilities add steps here. Step 1 classifies scikit-image's sample photos with the
default backbone's own ImageNet head; step 2 trains a linear probe on the embedded ELPV
solar-cell dataset and step 3 fine-tunes on the same split, each printed beside the published
results.

The whole demo has a time budget (:data:`DEMO_SECONDS`, 8 minutes): step 3's fine-tune fits its
epochs into what steps 1 and 2 left of it (:class:`~graft.ladder.auto.Deadline`, as ``--strategy
auto`` does), so a slower CPU gets a shorter schedule rather than a longer demo, and the demo
says so when it shortens.

``graft demo --quick`` runs the same steps on one ELPV cell in five of each class (a minute or
two instead of eight; the test suite runs it): its figures are not comparable with the published
ones, and it says so.

Example:
    >>> [step.title for step in DEMO_STEPS][:1]
    ['The pretrained model as a classifier']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from graft.classification import Classification, classify
from graft.datasets import sample_photos
from graft.zoo.registry import DEFAULT_BACKBONE

#: ``--quick`` keeps one cell in this many of each class.
QUICK_EVERY = 5
#: The whole demo's time budget in seconds: step 3's fine-tune shortens its epochs to end by then.
DEMO_SECONDS = 480.0


@dataclass(frozen=True)
class DemoData:
    """The ELPV cells the demo trains on: all of them, or one in ``QUICK_EVERY`` of each class.

    Example:
        >>> quick = DemoData.load(quick=True)
        >>> len(quick.cells), quick.folder
        (526, 'demo-quick')
    """

    cells: list[tuple[Path, str]]
    quick: bool = False
    #: How many cells the dataset has (all of them are used without ``quick``).
    total: int = 0
    #: When the demo started (``time.monotonic()``) and the seconds it may take.
    started: float = 0.0
    budget: float = math.inf

    @classmethod
    def load(cls, *, quick: bool = False, budget: float = math.inf) -> DemoData:
        """The binary ELPV cells, every one or (``quick``) a stratified fifth; the demo's
        ``budget`` (seconds) counts from now."""
        started = time.monotonic()
        from graft.datasets import elpv

        cells = every = elpv("binary")
        if quick:
            labels = sorted({label for _, label in cells})
            cells = [
                cell
                for label in labels
                for cell in [c for c in cells if c[1] == label][::QUICK_EVERY]
            ]
        return cls(cells, quick, len(every), started, budget)

    @property
    def folder(self) -> str:
        """The folder in graft's cache the demo's runs go to (``demo-quick`` for a quick demo, so
        it leaves the full demo's runs alone)."""
        return "demo-quick" if self.quick else "demo"

    @property
    def deadline(self) -> float:
        """When the demo should be over (``time.monotonic()``); the fine-tune fits into it."""
        return self.started + self.budget

    def note(self, console: Console) -> None:
        """Say, in a quick demo, that its figures are not the published benchmark's."""
        if self.quick:
            console.print(
                f"--quick: {len(self.cells)} of the {self.total:,} cells (one in {QUICK_EVERY} of "
                "each class); the figures below are not comparable with the published ones",
                highlight=False,
            )


@dataclass(frozen=True)
class DemoStep:
    """One part of the demo: a title and a function that runs it and returns a summary."""

    title: str
    run: Callable[[Console, DemoData], str]


def print_classification(
    console: Console, result: Classification, *, title: str | None = None
) -> None:
    """Print one image's top-k as ranked lines with probability bars."""
    console.print(f"[bold]{title or result.path}[/bold]")
    if result.error is not None:
        console.print(f"  [red]error:[/red] {result.error}")
        return
    width = max(len(p.label) for p in result.predictions)
    for rank, prediction in enumerate(result.predictions, 1):
        bar = "█" * round(prediction.probability * 30)
        console.print(
            f"  {rank}. {prediction.label:<{width}}  {prediction.probability * 100:5.1f} %  "
            f"[cyan]{bar}[/cyan]",
            highlight=False,
        )


def _classify_photos(console: Console, data: DemoData) -> str:
    photos = sample_photos()
    results = classify(list(photos.values()), backbone=DEFAULT_BACKBONE, top_k=5)
    for (name, _), result in zip(photos.items(), results, strict=True):
        print_classification(console, result, title=f"{name} ({result.path.rsplit('/', 1)[-1]})")
    top = ", ".join(
        f"{name}: {result.predictions[0].label}"
        for name, result in zip(photos, results, strict=True)
        if result.ok
    )
    return f"top-1 with {DEFAULT_BACKBONE}: {top}"


#: The cells' views: flips and quarter turns (an EL image of a cell has no up or down; the
#: paper augmented with the same), 85.98 % against 82.93 % for the image alone (bench/README).
ELPV_VIEWS = "dihedral"
#: Deitsch et al., Solar Energy 2019: defective vs functional, stratified 25 % test split.
ELPV_PUBLISHED = {"CNN (fine-tuned VGG19)": 88.42, "SVM (hand-crafted features)": 82.44}


def _elpv_linear_probe(console: Console, data: DemoData) -> str:
    from graft.cli.render import data_summary, extraction_progress, precision_line
    from graft.config import cache_dir
    from graft.data.prepare import DataOptions
    from graft.training import LinearOptions, train_linear

    console.print(
        "ELPV solar cells (2,624 electroluminescence images), defective vs functional, "
        "stratified 25 % test split; features from "
        f"{DEFAULT_BACKBONE} (cached), logistic regression head; the cells have no up or down, "
        "so the head learns from their eight flips and quarter turns and predicts their "
        "average (--tta dihedral, as the paper augmented)",
        highlight=False,
    )
    data.note(console)
    with extraction_progress(console, "features") as progress:
        result = train_linear(
            data.cells,
            name="elpv-binary",
            out=cache_dir() / data.folder / "elpv-linear",
            overwrite=True,
            data_options=DataOptions(val=0.0, test=0.25, seed=0),
            options=LinearOptions(tta=ELPV_VIEWS),
            on_report=lambda report: data_summary(console, report),
            progress=progress,
        )
    for choice in result.extraction.get("precision", []):
        console.print(precision_line(choice), highlight=False)
    accuracy = _beside_published(console, result.metrics, [], "graft linear probe (this run)")
    return (
        f"ELPV linear probe: test accuracy {accuracy:.2f} % (published: CNN 88.42 %, SVM 82.44 %), "
        f"run in {result.run_dir}"
    )


def _elpv_finetune(console: Console, data: DemoData) -> str:
    from graft.cli.render import TrainingProgress, data_summary
    from graft.config import cache_dir
    from graft.data.dataset import from_items
    from graft.data.splits import assign_splits
    from graft.ladder.auto import Deadline, evaluation_reserve
    from graft.training import NeuralOptions, train_neural
    from graft.training.options import CARVED_VAL
    from graft.tta import views

    # A short fine-tune that fits in a demo on a laptop CPU (a few minutes).
    options = NeuralOptions(
        strategy="finetune",
        epochs=4,
        freeze_epochs=1,
        unfreeze="3",
        augment=ELPV_VIEWS,
        tta=ELPV_VIEWS,
    )
    console.print(
        f"the same split, fine-tuned: {DEFAULT_BACKBONE} with a new head for 1 epoch, then its top "
        f"{options.unfreeze} stages unfrozen for {options.epochs - 1} more, trained on random "
        "flips and quarter turns and predicting with all eight",
        highlight=False,
    )
    # the published split as given splits: the fine-tune carves its validation split from train
    # (to choose its epoch and to check itself against the probe) and tests on the same images
    data.note(console)
    published = assign_splits(from_items(data.cells, source="elpv-binary"), val=0.0, test=0.25)
    # the final evaluation predicts every view of the test split and the carved validation split
    evaluated = len(published.split("test")) + CARVED_VAL * len(published.split("train"))
    reserve = evaluation_reserve(
        evaluated, views=len(views(ELPV_VIEWS)), views_per_second=_step_2_speed(data)
    )
    deadline = Deadline(data.deadline, reserve=reserve)
    result = train_neural(
        published,
        out=cache_dir() / data.folder / "elpv-finetune",
        overwrite=True,
        options=options,
        on_report=lambda report: data_summary(console, report) if report.warnings else None,
        callbacks=[TrainingProgress(console), deadline],
    )
    if deadline.shortened or deadline.cut:
        changes = [f"shortened {s}" for s in deadline.shortened]
        changes += [f"skipped {cut} and after" for cut in deadline.cut]
        console.print(
            f"time: to end within the demo's budget of {data.budget:.0f} s, the fine-tune "
            + "; ".join(changes),
            highlight=False,
        )
    console.print(f"safeguard: {result.safeguard['message']}", highlight=False)
    linear = _read_linear_accuracy(data)
    others = [("graft linear probe (step 2)", linear)] if linear is not None else []
    accuracy = _beside_published(console, result.metrics, others, "graft fine-tune (this run)")
    return f"ELPV fine-tune: test accuracy {accuracy:.2f} %, run in {result.run_dir}"


def _beside_published(
    console: Console, metrics: dict[str, Any], others: list[tuple[str, float]], label: str
) -> float:
    """Print the run's metrics, then its test accuracy ranked among the published results."""
    from graft.cli.render import metrics_table

    console.print(metrics_table(metrics))
    accuracy = float(metrics["test"]["accuracy"]) * 100
    console.print("[bold]test accuracy beside the published results[/bold] (Deitsch et al. 2019):")
    rows = [(label, accuracy), *others, *ELPV_PUBLISHED.items()]
    for name, value in sorted(rows, key=lambda row: -row[1]):
        console.print(f"  {name:<32} {value:6.2f} %", highlight=False)
    return accuracy


def _step_2_record(data: DemoData, name: str) -> Any:
    """A JSON file of step 2's run (``config.json``, ``metrics.json``); ``None`` without one."""
    import json

    from graft.config import cache_dir

    try:
        return json.loads((cache_dir() / data.folder / "elpv-linear" / name).read_text())
    except (OSError, ValueError):
        return None


def _step_2_speed(data: DemoData) -> float | None:
    """The views a second step 2 extracted on this machine, decoding included; ``None`` when
    some came from the cache (a rerun), which says nothing of this machine's speed."""
    from graft.runs import CONFIG

    record = _step_2_record(data, CONFIG)
    try:
        computed, cached = record["extraction"]["computed"], record["extraction"]["cached"]
        seconds = float(record["timings_s"]["extract"])
    except (KeyError, TypeError, ValueError):
        return None
    return computed / seconds if computed and not cached and seconds > 0 else None


def _read_linear_accuracy(data: DemoData) -> float | None:
    from graft.runs import METRICS

    record = _step_2_record(data, METRICS)
    try:
        return float(record["test"]["accuracy"]) * 100
    except (KeyError, TypeError, ValueError):
        return None


DEMO_STEPS: list[DemoStep] = [
    DemoStep("The pretrained model as a classifier", _classify_photos),
    DemoStep("Transfer learning, the fast path: a linear probe on ELPV", _elpv_linear_probe),
    DemoStep("Fine-tuning on ELPV: a new head, then the top stages unfrozen", _elpv_finetune),
]


def run_demo(
    console: Console | None = None, *, quick: bool = False, budget: float = DEMO_SECONDS
) -> list[str]:
    """Run every demo step, printing as it goes; return the summary line of each step.

    Args:
        console: Where to print (default: the terminal).
        quick: Train on one ELPV cell in five of each class (:class:`DemoData`).
        budget: Seconds the whole demo may take; the fine-tune fits its epochs into what the
            steps before it left.

    Example:
        >>> summaries = run_demo(Console(quiet=True))  # doctest: +SKIP
        >>> summaries[0].startswith("top-1 with efficientnet_lite0.in1k")  # doctest: +SKIP
        True

    (``tests/test_cli.py`` runs the whole demo with ``quick``.)
    """
    console = console or Console()
    data = DemoData.load(quick=quick, budget=budget)
    summaries = []
    for number, step in enumerate(DEMO_STEPS, 1):
        console.rule(f"[bold]{number}. {step.title}")
        summaries.append(step.run(console, data))
    console.rule("[bold]Summary")
    for number, summary in enumerate(summaries, 1):
        console.print(f"{number}. {summary}", highlight=False)
    elapsed = time.monotonic() - data.started
    console.print(f"the demo took {elapsed:.0f} s (budget {budget:.0f} s)", highlight=False)
    return summaries
