"""The end of a neural run: the best weights become the model, the splits are evaluated, and
``config.json`` says ``complete`` only once every file exists.

Example:
    >>> callable(finish_run), callable(run_config)
    (True, True)
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save_file

from graft.faults import fault_point
from graft.fileio import atomic_path, write_json_atomic
from graft.metrics import classification_metrics
from graft.predictor import NeuralPredictor
from graft.runs import (
    CHECKPOINT_BEST,
    MANIFEST,
    METRICS,
    MODEL,
    RunConfig,
    predictions_file,
    write_config,
    write_predictions,
)
from graft.training.linear import library_versions
from graft.training.lpft import (
    average_with_the_probe,
    probe_margin,
    probe_probabilities,
    refit_probe,
)
from graft.training.probe import safeguard_summary, shown_figure

if TYPE_CHECKING:
    from graft.training.trainer import Trainer


def run_config(trainer: Trainer, status: str) -> dict[str, Any]:
    """The run's ``config.json`` with ``status`` (``running`` or ``complete``)."""

    record = trainer.model.record
    frozen = trainer.inputs.frozen_precision
    return {
        "strategy": trainer.options.strategy,
        "status": status,
        "created": trainer.config.get("created") or datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": trainer.classes,
        "backbone": {
            "name": record.name,
            "architecture": record.architecture,
            "weights_sha256": record.weights.sha256,
            "pretrained": trainer.options.strategy != "scratch",
            "from_run": trainer.source,
            "preprocessing": trainer.preprocessing.to_dict(),
        },
        "head": trainer.model.head_config.to_dict(),
        "options": trainer.options.to_dict(),
        "augment": trainer.augment.to_dict(),
        "precision": trainer.precision,
        "tta": trainer.options.tta,
        **({"frozen_precision": frozen} if frozen else {}),
        "device": str(trainer.device),
        "phases": [asdict(phase) for phase in trainer.phases],
        "data": {
            "source": trainer.report.images.source,
            "layout": trainer.report.images.layout,
            "fingerprint": trainer.report.fingerprint(),
            "counts": trainer.report.images.counts(),
            "options": trainer.data_options.to_dict(),
            "skipped": len(trainer.report.problems),
            **trainer.report.cleaning(),
            "manifest": MANIFEST,
        },
        "seed": trainer.seed,
        "distributed": {
            "world_size": trainer.context.world_size,
            "backend": "nccl" if trainer.device.type == "cuda" else "gloo",
        }
        if trainer.context.enabled
        else None,
        "versions": library_versions(),
    }


# -- resume ------------------------------------------------------------------------------


def finish_run(trainer: Trainer, *, parameters_identical: bool = True) -> dict[str, dict[str, Any]]:
    """Save the best weights as the model, evaluate the splits, mark the run complete.

    Every file exists before ``config.json`` says ``complete``; a kill at any point leaves a
    run that says ``running`` and that ``--resume`` finishes with the same result.
    """
    best = trainer.run_dir / CHECKPOINT_BEST
    if best.is_file():
        trainer.model.load_state_dict(
            torch.load(best, map_location="cpu", weights_only=True)["model"]
        )
    # a kept probe learns from the carved validation images too, as the linear strategy fits
    # on all of train, unless they came from the images a cap (--per-class, --limit) left out:
    # then it keeps the images it was given
    carved = bool(trainer.report.carved_val) and not trainer.report.carved_beyond_cap
    refit = trainer.best.get("epoch") == 0 and carved
    if refit:
        refit_probe(trainer)
    wise = average_with_the_probe(trainer, refit=carved)
    tensors = {k: v.detach().contiguous().cpu() for k, v in trainer.model.state_dict().items()}
    with atomic_path(trainer.run_dir / MODEL) as tmp:
        save_file(tensors, str(tmp))
    fault_point("neural.after-model")
    config = run_config(trainer, "complete")
    config["best_epoch"] = trainer.best.get("epoch")
    config["best_weights"] = (
        "probe" if trainer.best.get("epoch") == 0 else trainer.best.get("weights")
    )
    config["probe"] = trainer.probe
    guarded = trainer.options.strategy != "scratch" and trainer.options.safeguard
    config["safeguard"] = trainer.safeguard = safeguard_summary(
        trainer.probe if guarded else None,
        trainer.history,
        trainer.best.get("epoch"),
        trainer.settings.monitor,
        margin=probe_margin(trainer),
    )
    if refit:
        trainer.safeguard["refit"] = "train+val"
        trainer.safeguard["message"] += (
            "; refitted on train and the validation split carved from it, as the linear "
            "strategy fits on all of train (its validation figures are no longer held out)"
        )
    if wise is not None:
        trainer.safeguard["wise"] = wise
        trainer.safeguard["message"] += wise_message(wise, trainer.settings.monitor)
    if config["distributed"] is not None:
        config["distributed"]["parameters_identical"] = parameters_identical
    config["time_per_epoch_s"] = {
        phase.name: round(
            float(
                np.mean([h["seconds"] for h in trainer.history if h["phase"] == phase.name] or [0])
            ),
            2,
        )
        for phase in trainer.phases
    }
    engine = str(trainer.options.engine)
    predictor = NeuralPredictor(trainer.run_dir, RunConfig.from_dict(config), engine)
    metrics: dict[str, dict[str, Any]] = {}
    from_the_cache = _probe_from_the_cache(trainer, config, predictor)
    for split in ("val", "test"):
        samples = trainer.samples[split]
        if not samples:
            continue
        if from_the_cache:
            proba, ok = probe_probabilities(trainer, samples)
        else:
            proba, ok, _ = predictor.predict_files([s.path for s in samples])
        truth = [s.label for s, flag in zip(samples, ok, strict=True) if flag]
        metrics[split] = classification_metrics(truth, proba[ok], trainer.classes)
        write_predictions(
            trainer.run_dir / predictions_file(split),
            [s.path for s, flag in zip(samples, ok, strict=True) if flag],
            truth,
            proba[ok],
            trainer.classes,
        )
    write_json_atomic(trainer.run_dir / METRICS, metrics)
    fault_point("neural.before-complete")
    write_config(trainer.run_dir, config)  # last: "complete" only once every file exists
    best.unlink(missing_ok=True)
    return metrics


def _probe_from_the_cache(
    trainer: Trainer, config: dict[str, Any], predictor: NeuralPredictor
) -> bool:
    """Whether the final evaluation may read the feature cache instead of running the network:
    the weights kept are the probe on the library's pretrained backbone (a backbone taken from
    an earlier run, ``run:DIR``, has no features in the cache), and both the cached features
    and the saved network are fp32 (a bf16 network also runs its head in bf16)."""
    return (
        config["best_weights"] == "probe"
        and trainer.source is None
        and predictor.precision == "fp32"
        and trainer.inputs.features_precision() == "fp32"
    )


def wise_message(wise: dict[str, Any], monitor: str) -> str:
    """The safeguard message's WiSE-FT clause.

    Example:
        >>> wise_message({"alpha": 0.5, "val_accuracy": 0.9, "taken": True}, "val_accuracy")
        '; averaged with the probe it started from (WiSE-FT, 50 % trained): val_accuracy 90.00 %'
    """
    shown = shown_figure(float(wise[monitor]), monitor)
    if not wise["taken"]:
        return (
            f"; its average with the probe (WiSE-FT) scored {monitor} {shown}, below the probe, "
            "so the trained head is kept as it is"
        )
    refit = (
        " (the probe half then refitted on train and the carved validation split)"
        if wise.get("refit")
        else ""
    )
    return (
        "; averaged with the probe it started from "
        f"(WiSE-FT, {100 * wise['alpha']:.0f} % trained): {monitor} {shown}{refit}"
    )
