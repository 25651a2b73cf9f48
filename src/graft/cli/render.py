"""Rich rendering shared by the commands: data summaries, metrics, progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from graft.training.callbacks import Callback

if TYPE_CHECKING:
    from collections.abc import Callable

    from graft.data.validate import DataReport

MAX_LISTED = 10


def data_summary(console: Console, report: DataReport) -> None:
    """Print classes x splits counts, then problems and warnings (each with its fix)."""
    counts = report.images.counts()
    splits = list(counts)
    table = Table(title=f"data: {report.images.source}", title_justify="left")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for label in report.images.classes:
        table.add_row(label, *(str(counts[split].get(label, 0)) for split in splits))
    table.add_row("[bold]total", *(f"[bold]{sum(counts[s].values())}" for s in splits))
    console.print(table)
    if report.carved_val:
        console.print(
            f"validation: the data has no validation split, so {report.carved_val:.0%} of each "
            "class of train became one (stratified; it selects the epoch and checks the run "
            "against the probe); --val 0 trains on all of train",
            highlight=False,
            soft_wrap=True,
        )
    for _, reason in report.problems[:MAX_LISTED]:
        console.print(f"[yellow]skipped:[/yellow] {reason}", highlight=False, soft_wrap=True)
    if len(report.problems) > MAX_LISTED:
        console.print(
            f"[yellow]skipped:[/yellow] ... and {len(report.problems) - MAX_LISTED} more "
            "(all are listed in the run's skipped.csv)"
        )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)


def metrics_table(metrics: dict[str, dict[str, Any]]) -> Table:
    """Return accuracy and macro-F1 (with 95 % bootstrap intervals), ROC AUC and n per split."""
    table = Table()
    table.add_column("split")
    table.add_column("accuracy [95 % CI]", justify="right")
    table.add_column("macro-F1 [95 % CI]", justify="right")
    table.add_column("ROC AUC", justify="right")
    table.add_column("n", justify="right")
    for split, values in metrics.items():
        intervals = values.get("intervals", {})
        auc = values.get("roc_auc")
        table.add_row(
            split,
            _with_interval(values["accuracy"], intervals.get("accuracy"), percent=True),
            _with_interval(values["macro_f1"], intervals.get("macro_f1"), percent=False),
            f"{auc:.4f}" if auc is not None else "",
            str(values["n"]),
        )
    return table


def _with_interval(value: float, interval: list[float] | None, *, percent: bool) -> str:
    scale, unit, digits = (100.0, " %", 2) if percent else (1.0, "", 4)
    text = f"{value * scale:.{digits}f}{unit}"
    if interval:
        text += f" [{interval[0] * scale:.{digits}f}, {interval[1] * scale:.{digits}f}]"
    return text


def per_class_table(metrics: dict[str, Any]) -> Table:
    """Return precision, recall, F1 and support per class."""
    table = Table()
    for column in ("#", "class", "precision", "recall", "F1", "n"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for number, name in enumerate(metrics["classes"], 1):
        values = metrics["per_class"][name]
        table.add_row(
            str(number),
            name,
            f"{values['precision']:.3f}",
            f"{values['recall']:.3f}",
            f"{values['f1']:.3f}",
            str(values["support"]),
        )
    return table


def confusion_table(metrics: dict[str, Any]) -> Table:
    """Return the confusion matrix: rows are true classes, columns predicted (by number)."""
    classes = metrics["classes"]
    table = Table()
    table.add_column("true \\ predicted")
    for number in range(1, len(classes) + 1):
        table.add_column(f"#{number}", justify="right")
    for number, row in enumerate(metrics["confusion_matrix"], 1):
        table.add_row(f"#{number} {classes[number - 1]}", *(str(v) for v in row))
    return table


class TrainingProgress(Callback):
    """A progress bar per epoch (loss, images/s) and one summary line per finished epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: Any = None

    def on_train_begin(self, state: dict[str, Any]) -> None:
        if state["epoch"]:
            self.console.print(
                f"resuming {state['run_dir']} after epoch {state['epoch']}", highlight=False
            )

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        description = (
            f"epoch {state['epoch'] + 1}/{state['total_epochs']} {state['phase']} ({state['path']})"
        )
        self.task = self.progress.add_task(description, total=state["steps"], loss="-", rate="")
        self.progress.start()

    def on_batch_end(self, state: dict[str, Any]) -> None:
        if self.progress is not None:
            batch = state["batch"]
            self.progress.update(
                self.task,
                advance=1,
                loss=f"{batch['loss']:.3f}",
                rate=f"{batch['images_per_s']:.1f} img/s",
            )

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
        r = state["record"]
        line = (
            f"epoch {r['epoch']}/{state['total_epochs']} {r['phase']:<8} "
            f"train loss {r['train_loss']:.3f} acc {r['train_accuracy'] * 100:5.1f} %"
        )
        if "val_accuracy" in r:
            line += (
                f" | val loss {r['val_loss']:.3f} acc {r['val_accuracy'] * 100:5.2f} % "
                f"F1 {r['val_macro_f1']:.3f}"
            )
            if "ema" in r:
                line += f" | ema acc {r['ema']['val_accuracy'] * 100:5.2f} %"
            line += f" | {r['seconds']:.1f} s ({r['images_per_s']:.0f} img/s), eval "
            line += f"{r['eval_seconds']:.1f} s"
        else:
            line += f" | {r['seconds']:.1f} s ({r['images_per_s']:.0f} img/s) | no validation"
        # one line whatever the width: piped output or a narrow terminal never breaks a figure
        self.console.print(line, highlight=False, soft_wrap=True)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "     - img/s", style="cyan")


@contextmanager
def extraction_progress(console: Console, description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``(done, total)`` callback that drives a progress bar with images/s and ETA."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if progress.live.is_started:
            progress.stop()


def precision_line(choice: dict[str, Any]) -> str:
    """One line from a stored :class:`graft.features.precision.PrecisionChoice`."""
    from graft.features.precision import PrecisionChoice

    return PrecisionChoice(
        choice["precision"], choice["reason"], requested=choice["requested"]
    ).summary()
