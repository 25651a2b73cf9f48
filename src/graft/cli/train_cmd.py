"""``graft train``: train a classifier on a labelled folder or table, with any strategy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from graft.cli.render import (
    TrainingProgress,
    data_summary,
    extraction_progress,
    metrics_table,
    precision_line,
)
from graft.zoo.registry import DEFAULT_BACKBONE


def train(
    data: Path | None = typer.Argument(
        None, help="Folder (class folders or train/val/test folders) or CSV/TSV of path,label."
    ),
    root: Path | None = typer.Option(
        None, help="For a CSV/TSV: the folder its paths are relative to."
    ),
    strategy: str = typer.Option(
        "linear",
        help="linear (classic head on cached features), head, finetune, scratch, or auto (the "
        "best on validation of the probe and LP-FT within --budget).",
    ),
    budget: str = typer.Option(
        "10m", help="auto: wall-clock budget for the whole ladder (90s, 10m, 1h)."
    ),
    head: str = typer.Option("logreg", help="linear: logreg, svm, knn or centroid."),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE, "--backbone", "-b", help="Backbone; linear: A,B to concatenate; run:DIR."
    ),
    out: Path | None = typer.Option(
        None, help="Run directory (default runs/<data>-<strategy>-<time>)."
    ),
    resume: Path | None = typer.Option(
        None, help="Continue an interrupted run (neural strategies)."
    ),
    val: float | None = typer.Option(
        None,
        help="Validation fraction when the data has no split (0.2); neural strategies also "
        "carve 0.1 of train when the given splits have no validation. 0: none.",
    ),
    test: float | None = typer.Option(None, help="Test fraction when the data has no split (0)."),
    seed: int = typer.Option(0, help="Seeds splits, subsets, initialisation and data order."),
    per_class: int | None = typer.Option(
        None, "--per-class", help="At most N training images per class."
    ),
    limit: int | None = typer.Option(None, help="At most N training images in total (stratified)."),
    dedupe: str = typer.Option(
        "none",
        help="Drop the later copy of images in two splits: none, exact (identical files) or "
        "near (also resized, re-encoded or cropped copies).",
    ),
    fixes: Path | None = typer.Option(
        None, help="Apply a decisions file (graft audit's fixes.csv: path,action,label)."
    ),
    class_weight: str | None = typer.Option(
        None, "--class-weight", help="balanced: weight rare classes up."
    ),
    layer: str = typer.Option("final", help="linear: final, or stage1..stageN (earlier features)."),
    pool: str = typer.Option("avg", help="linear: avg or max spatial pooling."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input side in pixels."),
    crop_pct: float | None = typer.Option(
        None,
        "--crop-pct",
        help="Fraction of the resized image the centre crop keeps (default: the backbone's, "
        "0.875 for most; 1.0: no centre crop).",
    ),
    engine: str = typer.Option(
        "auto", help="auto, torch, onnxruntime or openvino (features and frozen parts)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step (linear 16, neural 32)."
    ),
    epochs: int = typer.Option(5, help="Neural: total epochs."),
    freeze_epochs: int = typer.Option(
        1, "--freeze-epochs", help="finetune: epochs before unfreezing."
    ),
    unfreeze: str = typer.Option("2", help="finetune: top stages to unfreeze, or all."),
    lr: float = typer.Option(1e-3, help="Neural: learning rate of the new head (AdamW)."),
    backbone_lr: float = typer.Option(
        0.1, "--backbone-lr", help="finetune: top stage's rate / --lr."
    ),
    stage_lr_decay: float = typer.Option(
        0.5, "--stage-lr-decay", help="Rate factor per stage down."
    ),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    schedule: str = typer.Option("cosine", help="cosine (with warmup) or onecycle."),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing", help="Label smoothing."),
    sampler: str = typer.Option("random", help="random or balanced (equal classes per epoch)."),
    augment: str = typer.Option(
        "none", help="none, light, standard, dihedral, strong, or a JSON file."
    ),
    hidden: int | None = typer.Option(None, help="Neural: width of a hidden layer in the head."),
    head_init: str = typer.Option(
        "probe",
        "--head-init",
        help="Neural: probe (LP-FT: the head starts as the linear probe) or random.",
    ),
    ema: float = typer.Option(
        0.998, help="Neural: EMA decay of the weights, scored beside them each epoch; 0: off."
    ),
    tta: str = typer.Option(
        "none",
        help="Test-time augmentation the run predicts with: none, flip or dihedral. Linear: "
        "the probe also fits on every view of each training image.",
    ),
    safeguard: bool = typer.Option(
        True,
        help="Neural: keep the linear probe unless a trained epoch beats it on validation.",
    ),
    wise: float = typer.Option(
        0.5,
        help="head: a kept trained head ends at (1 - wise) x probe + wise x trained (WiSE-FT), "
        "when no worse on validation; 1: the trained head as it is.",
    ),
    dropout: float = typer.Option(0.2, help="Neural: dropout in the head."),
    bn: str = typer.Option(
        "eval",
        help="BatchNorm statistics: eval (keep pretrained), unfrozen, or train (all update).",
    ),
    monitor: str = typer.Option("val_accuracy", help="val_accuracy, val_macro_f1 or val_loss."),
    patience: int | None = typer.Option(None, help="Early stopping after N epochs without gain."),
    precision: str = typer.Option(
        "auto",
        help="linear: feature precision auto (the fastest that passes the check vs fp32), "
        "fp32, bf16 or int8; neural: training precision auto (bf16 where native), fp32 or bf16.",
    ),
    precision_tolerance: float = typer.Option(
        1.0, "--precision-tolerance", help="linear: largest accepted accuracy drop of bf16/int8."
    ),
    force_precision: bool = typer.Option(
        False, "--force-precision", help="linear: keep bf16/int8 even past the tolerance."
    ),
    workers: int | None = typer.Option(None, help="Data-loading processes."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        help="Neural: train in N processes (torchrun, DistributedDataParallel; gloo on CPU, "
        "nccl on CUDA). --batch-size stays the global batch.",
    ),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Train a classifier: validate the data, train, evaluate, save the run directory."""
    import os
    import sys

    from graft.api import train as run_training
    from graft.ladder.auto import AutoResult
    from graft.training import RunResult

    if nproc is not None and "WORLD_SIZE" not in os.environ:
        from graft.errors import ConfigError
        from graft.training.distributed import launch

        if strategy == "auto":
            raise ConfigError(
                "--nproc trains one neural strategy in several processes; --strategy auto runs "
                "its ladder in one: drop --nproc, or pick --strategy finetune"
            )
        if strategy == "linear" and resume is None:
            raise ConfigError(
                "--nproc trains the neural strategies (head, finetune, scratch); the linear "
                "probe runs in one process (its features scale out with graft extract)"
            )
        raise typer.Exit(launch(nproc, _without_nproc(sys.argv[1:])))
    main_process = os.environ.get("RANK", "0") == "0"
    console = Console(stderr=as_json, quiet=not main_process)
    data_options: dict[str, Any] = {
        "root": root,
        "val": val,
        "test": test,
        "seed": seed,
        "per_class": per_class,
        "limit": limit,
        "dedupe": dedupe,
        "fixes": fixes,
    }
    common: dict[str, Any] = {
        "backbone": backbone,
        "class_weight": class_weight,
        "image_size": image_size,
        "crop_pct": crop_pct,
        "engine": engine,
        **({"batch_size": batch_size} if batch_size is not None else {}),
    }
    options: dict[str, Any]
    if strategy == "linear" and resume is None:
        options = {
            **common,
            "head": head,
            "layer": layer,
            "pool": pool,
            "precision": precision,
            "precision_tolerance": precision_tolerance,
            "force_precision": force_precision,
            "tta": tta,
        }
    else:
        options = {
            **common,
            **({"budget": budget} if strategy == "auto" else {}),
            "epochs": epochs,
            "freeze_epochs": freeze_epochs,
            "unfreeze": unfreeze,
            "lr": lr,
            "backbone_lr": backbone_lr,
            "stage_lr_decay": stage_lr_decay,
            "weight_decay": weight_decay,
            "schedule": schedule,
            "label_smoothing": label_smoothing,
            "sampler": sampler,
            "augment": augment,
            "hidden": hidden,
            "head_init": head_init,
            "safeguard": safeguard,
            "wise": wise,
            "ema": ema,
            "tta": tta,
            "dropout": dropout,
            "bn": bn,
            "monitor": monitor,
            "patience": patience,
            "precision": precision,
            "workers": workers,
            "device": None if device == "auto" else device,
        }
    shown: list[int] = []  # warnings printed with the data summary

    def report(summary: Any) -> None:
        data_summary(console, summary)
        shown.append(len(summary.warnings))

    with extraction_progress(console, "features") as progress:
        result = run_training(
            data,
            strategy=strategy,
            out=out,
            resume=resume,
            overwrite=overwrite,
            on_report=report,
            progress=progress,
            callbacks=[TrainingProgress(console)],
            on_rung=lambda rung, message: console.print(
                f"[bold]auto[/bold] {rung}: {message}", highlight=False
            ),
            **data_options,
            **options,
        )
    summary: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "metrics": {
            split: {k: v for k, v in m.items() if k in ("accuracy", "macro_f1", "n")}
            for split, m in result.metrics.items()
        },
    }
    if isinstance(result, RunResult):
        summary.update(head=result.head_params, extraction=result.extraction)
    elif isinstance(result, AutoResult):
        summary["auto"] = {"chosen": result.chosen, "reason": result.reason}
    else:
        summary["history"] = result.history
        summary["safeguard"] = result.safeguard
    summary["timings_s"] = {k: round(v, 2) for k, v in result.timings.items()}
    if as_json:
        if main_process:
            typer.echo(json.dumps(summary, indent=2))
        return
    # warnings found after the summary (the probe's near-copy check needs its features)
    later = result.report.warnings[shown[-1] if shown else 0 :] if result.report else []
    for warning in later:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    console.print(f"[bold]{strategy}[/bold] on {backbone}", highlight=False)
    console.print(metrics_table(result.metrics))
    if "extraction" in summary:
        extraction = summary["extraction"]
        console.print(
            f"features: {extraction['computed']} computed ({extraction['engine'] or 'none'}), "
            f"{extraction['cached']} from the cache; head: "
            + ", ".join(f"{k}={v}" for k, v in summary["head"].items()),
            highlight=False,
        )
        for choice in extraction.get("precision", []):
            console.print(precision_line(choice), highlight=False)
    if isinstance(result, AutoResult):
        console.print(
            f"auto chose [bold]{result.chosen}[/bold]: {result.reason}; the ladder: "
            f"{result.run_dir / 'ladder' / 'compare.html'}",
            highlight=False,
        )
    if summary.get("safeguard"):
        console.print(f"safeguard: {summary['safeguard']['message']}", highlight=False)
    console.print(
        "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()), highlight=False
    )
    console.print(f"run saved to [bold]{result.run_dir}[/bold] (graft evaluate {result.run_dir})")


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N`` (torchrun starts the processes)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept
