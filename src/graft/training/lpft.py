"""LP-FT's start and the safeguard (:mod:`graft.training.probe` holds the layer arithmetic).

Before the first epoch a trainer that uses the probe fits graft's logistic regression on the
cached training features, starts its head from it (LP-FT) and, with a validation split, saves
it as the checkpoint to beat (the safeguard). A trained epoch replaces it only by more than one
standard error of its validation accuracy; a probe that is kept is fitted again, at the end, on
train and the validation split carved from it. Its final evaluation reads the cached features
(:func:`probe_probabilities`): with the backbone as pretrained, the network's prediction is the
probe's on them, and the images need not run through the network again.

A trained ``head`` that is kept ends halfway between itself and the probe it started from
(:func:`average_with_the_probe`): WiSE-FT (Wortsman et al., CVPR 2022, "Robust fine-tuning of
zero-shot models"), whose weight-space average of the start and the fine-tuned weights, half
each, was better in and out of distribution than either end. For a linear head on frozen
features the average of the weights is the average of the two heads' logits, an ensemble of the
probe and the trained head in one layer.

Example:
    >>> callable(start_from_the_probe), callable(refit_probe), callable(probe_probabilities)
    (True, True, True)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from graft.data.dataset import Sample
from graft.heads import ClassicHead, fit_head, view_groups
from graft.runs import CHECKPOINT_BEST
from graft.training.checkpoints import save_checkpoint
from graft.training.inputs import present
from graft.training.loop import monitored, validation_scores
from graft.training.probe import probe_layer, start_from_probe
from graft.tta import views

if TYPE_CHECKING:
    from graft.training.trainer import Trainer


def start_from_the_probe(trainer: Trainer) -> None:
    """Fit the linear probe on the cached training features; start the head from it (LP-FT,
    unless ``--head-init random``) and make it the checkpoint to beat on validation."""

    fitted = fit_probe(trainer, trainer.samples["train"])
    probe_head = copy.deepcopy(trainer.model.head).cpu()
    start_from_probe(probe_head, *probe_layer(fitted))
    probe_head.to(trainer.device)
    if trainer.options.head_init == "probe":
        trainer.model.head.load_state_dict(probe_head.state_dict())
    trainer.probe = {"C": fitted.params["C"], "selection": fitted.params["selection"]}
    val = trainer.inputs.cached_features(trainer.samples["val"])
    if val is None or not trainer.options.safeguard:
        return
    batches = trainer.inputs.val_batches(val)
    assert batches is not None
    trainer.probe.update(
        validation_scores(probe_head, batches(), trainer.settings, trainer.classes)
    )
    trainer.best = {"value": monitored(trainer.probe, trainer.settings.monitor), "epoch": 0}
    state = trainer.model.state_dict()
    state.update({f"head.{k}": v for k, v in probe_head.state_dict().items()})
    save_checkpoint(trainer, CHECKPOINT_BEST, state)


def refit_probe(trainer: Trainer) -> None:
    """The kept probe, fitted again on train and the validation split carved from train:
    choosing it needed held-out images, the model it stands for (the linear strategy's)
    learns from all of them."""
    # the same images as the linear strategy's train split, so the same probe (a head does not
    # depend on the order of its rows: graft.heads.canonical_order)
    fitted = fit_probe(
        trainer,
        trainer.samples["train"] + trainer.samples["val"],
        alone=True,  # the end of the run happens on rank 0 only
    )
    start_from_probe(trainer.model.head, *probe_layer(fitted))
    if trainer.probe is not None:
        trainer.probe["refit_C"] = fitted.params["C"]


def probe_probabilities(trainer: Trainer, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities of a run whose kept weights are the probe, from the feature cache.

    The backbone is then the pretrained one, so the network's prediction of an image is its
    head on the frozen features: those of each of the run's views (``--tta``), averaged as
    the predictor averages them. The linear strategy evaluates its probe the same way; a
    neural run then spends no second pass of the network over its validation and test images
    (with ``--tta dihedral``, eight).

    Returns:
        ``N x classes`` probabilities (rows of images that failed to decode are NaN) and the
        mask of rows that hold them, as :meth:`graft.predictor.Predictor.predict_files` gives.
    """
    head = trainer.model.head.eval()
    device = next(head.parameters()).device
    total = np.zeros((len(samples), len(trainer.classes)))
    ok = np.ones(len(samples), dtype=bool)
    chosen = views(trainer.options.tta)
    for view in chosen:
        result = trainer.inputs.view_extraction(samples, view, alone=True)
        ok &= result.ok
        features = torch.from_numpy(np.nan_to_num(result.features)).to(device)
        with torch.inference_mode():
            total += head(features).float().softmax(1).cpu().double().numpy()
    proba = total / len(chosen)
    proba[~ok] = np.nan
    return proba, ok


def average_with_the_probe(trainer: Trainer, *, refit: bool) -> dict[str, Any] | None:
    """WiSE-FT for a kept trained ``head``: its weights become ``(1 - a) * probe + a * trained``
    with ``a = --wise`` (0.5), the probe being the LP-FT start it trained from.

    The average is scored on validation first (with the probe fitted on train, so the images
    are still held out) and taken only if it does not fall below the probe there, so the
    safeguard's promise holds. With ``refit`` the probe half is then fitted again on train and
    the carved validation split, as a kept probe is (:func:`refit_probe`).

    Returns:
        ``alpha`` and the average's validation figures; ``None`` when nothing was averaged
        (not a ``head`` run, ``--wise 1``, no probe start or no validation split, or the
        probe kept) or ``taken: False`` when the average scored below the probe.
    """
    alpha = trainer.options.wise
    if (
        trainer.options.strategy != "head"
        or alpha >= 1
        or trainer.options.head_init != "probe"
        or trainer.probe is None
        or trainer.settings.monitor not in trainer.probe
        or not trainer.best.get("epoch")
    ):
        return None
    val = trainer.inputs.cached_features(trainer.samples["val"], alone=True)
    batches = trainer.inputs.val_batches(val)
    if batches is None:
        return None
    head = trainer.model.head
    trained = {name: value.detach().clone() for name, value in head.state_dict().items()}

    def averaged_with(probe: ClassicHead) -> dict[str, torch.Tensor]:
        start = copy.deepcopy(head)
        start_from_probe(start, *(t.to(next(head.parameters()).device) for t in probe_layer(probe)))
        return {
            name: torch.lerp(value, trained[name], alpha) if value.is_floating_point() else value
            for name, value in start.state_dict().items()
        }

    head.load_state_dict(averaged_with(fit_probe(trainer, trainer.samples["train"], alone=True)))
    scores = validation_scores(head, batches(), trainer.settings, trainer.classes)
    record: dict[str, Any] = {"alpha": alpha, **scores}
    monitor = trainer.settings.monitor
    record["taken"] = monitored(scores, monitor) >= monitored(trainer.probe, monitor)
    if not record["taken"]:
        head.load_state_dict(trained)
    elif refit:
        both = trainer.samples["train"] + trainer.samples["val"]
        head.load_state_dict(averaged_with(fit_probe(trainer, both, alone=True)))
        record["refit"] = "train+val"
    return record


def fit_probe(trainer: Trainer, samples: list[Sample], *, alone: bool = False) -> ClassicHead:
    """The linear strategy's logistic regression on these images' cached features (of every
    view of each, with ``--tta flip|dihedral``)."""
    # with --tta, the run predicts by averaging views, so the probe (which may be the model
    # kept) fits on every view of each image, as the linear strategy's does with --tta
    chosen = views(trainer.options.tta)
    return fit_head(
        "logreg",
        np.concatenate(
            [
                present(trainer.inputs.cached_features(samples, view, alone=alone)).numpy()
                for view in chosen
            ]
        ),
        [sample.label for sample in samples] * len(chosen),
        classes=trainer.classes,
        class_weight=trainer.options.class_weight,
        seed=trainer.seed,
        groups=view_groups(len(samples), len(chosen)),
    )


def probe_margin(trainer: Trainer) -> float:
    """One standard error of the probe's validation accuracy (or macro-F1),
    ``sqrt(p (1 - p) / n)``; 0 for the loss."""
    monitor = trainer.settings.monitor
    if trainer.probe is None or monitor not in trainer.probe or monitor == "val_loss":
        return 0.0
    p = float(trainer.probe[monitor])
    return float(np.sqrt(p * (1 - p) / max(1, len(trainer.samples["val"]))))
