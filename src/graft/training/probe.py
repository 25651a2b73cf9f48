"""LP-FT: the new head starts as the linear probe, and the probe guards the run.

Kumar et al. (ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution") fit a linear probe on the frozen features first and start fine-tuning
from it: the first forward pass already predicts what the probe predicts, so the early, large
gradients of a random head never reach the pretrained layers. graft fits the same logistic
regression as ``graft train --strategy linear`` (:func:`graft.heads.fit_head`) on the cached
features of the training split, folds its standardisation into the output layer's weight and
bias (:func:`probe_layer`), and writes it into the neural head (:func:`start_from_probe`).

The same probe is the run's safeguard: scored on the validation split before the first epoch,
it is the best checkpoint to beat, so a run ends with the probe's weights unless an epoch did
better on validation (:func:`safeguard_summary` says which was kept, with both figures).

Example:
    >>> import numpy as np
    >>> from graft.heads import fit_head
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(0, 1, (20, 4)), rng.normal(2, 1, (20, 4))]).astype(np.float32)
    >>> probe = fit_head("logreg", x, ["a"] * 20 + ["b"] * 20)
    >>> weight, bias = probe_layer(probe)
    >>> logits = torch.from_numpy(x) @ weight.T + bias
    >>> bool(np.allclose(logits.softmax(1).numpy(), probe.predict_proba(x), atol=1e-5))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graft.errors import ConfigError
from graft.heads import ClassicHead, linear_layer

HEAD_INITS = ("probe", "random")


def probe_layer(probe: ClassicHead) -> tuple[torch.Tensor, torch.Tensor]:
    """The logistic-regression probe as one linear layer on raw (unstandardised) features.

    ``coef @ ((x - mean) / scale) + intercept`` becomes ``weight @ x + bias``. A binary
    probe's single score ``s`` becomes the two logits ``(-s/2, s/2)``, whose softmax is the
    probe's ``(1 - sigmoid(s), sigmoid(s))``.

    Args:
        probe: A fitted ``logreg`` head.

    Returns:
        ``weight`` (classes x features) and ``bias`` (classes), float32.

    Raises:
        ConfigError: The head is not a logistic regression.
    """
    if probe.kind != "logreg":
        raise ConfigError(f"a {probe.kind} head has no linear layer; LP-FT starts from logreg")
    weight, bias = linear_layer(probe)
    return weight.float(), bias.float()


def start_from_probe(head: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Set a neural head's layers so that it computes ``weight @ x + bias`` (in eval mode).

    A head with one linear layer takes the probe as it is. With a hidden ReLU layer, its first
    ``2 x classes`` units carry ``z`` and ``-z`` and the output layer adds ``relu(z) -
    relu(-z) = z``; the other hidden units keep their random start, their outputs weighted 0.

    Args:
        head: A :class:`graft.models.transfer.NeuralHead`.
        weight: ``classes x features``, from :func:`probe_layer`.
        bias: ``classes``.

    Raises:
        ConfigError: The hidden layer has fewer than ``2 x classes`` units.
    """
    linears = [module for module in head.modules() if isinstance(module, nn.Linear)]
    classes = weight.shape[0]
    with torch.no_grad():
        if len(linears) == 1:
            linears[0].weight.copy_(weight)
            linears[0].bias.copy_(bias)
            return
        first, last = linears[0], linears[-1]
        if first.out_features < 2 * classes:
            raise ConfigError(
                f"--hidden {first.out_features} is too narrow to start from the linear probe "
                f"(it needs at least 2 x {classes} classes = {2 * classes} units); pass "
                f"--hidden {2 * classes} or more, or --head-init random"
            )
        first.weight[:classes] = weight
        first.weight[classes : 2 * classes] = -weight
        first.bias[:classes] = bias
        first.bias[classes : 2 * classes] = -bias
        eye = torch.eye(classes)
        last.weight.zero_()
        last.weight[:, :classes] = eye
        last.weight[:, classes : 2 * classes] = -eye
        last.bias.zero_()


def shown_figure(value: float, monitor: str) -> str:
    """A monitored validation figure as the safeguard prints it: the loss to four places, the
    others as percentages.

    Example:
        >>> shown_figure(0.9, "val_accuracy"), shown_figure(0.25, "val_loss")
        ('90.00 %', '0.2500')
    """
    return f"{value:.4f}" if monitor == "val_loss" else f"{100 * value:.2f} %"


def safeguard_summary(
    probe: dict[str, Any] | None,
    history: list[dict[str, Any]],
    best_epoch: int | None,
    monitor: str,
    *,
    margin: float = 0.0,
) -> dict[str, Any]:
    """Which model the run kept (the probe or a trained epoch), with both validation figures.

    Args:
        probe: The probe's record (its ``C`` and, with a validation split, its figures), or
            ``None`` (training from scratch has no probe; ``--no-safeguard`` turns it off).
        history: The epochs' records.
        best_epoch: The epoch of the weights kept (0: the probe).
        monitor: The monitored metric.
        margin: How much a trained epoch had to beat the probe by (one standard error).

    Returns:
        ``kept`` (``probe`` or ``trained``), ``monitor``, the ``probe``'s and the best
        ``trained`` epoch's figures (``None`` where unknown), ``best_epoch`` and a one-line
        ``message``.

    Example:
        >>> history = [{"epoch": 1, "val_accuracy": 0.85}]
        >>> safeguard_summary({"val_accuracy": 0.9}, history, 0, "val_accuracy")["message"]
        'kept the linear probe: val_accuracy 90.00 %; no trained epoch did better (best 85.00 %)'
    """
    if probe is None:
        return {
            "kept": "trained",
            "message": "not checked against the linear probe (training from scratch, or "
            "--no-safeguard)",
        }
    scored = [
        entry[monitor]
        for record in history
        for entry in (record, record.get("ema", {}))
        if monitor in entry
    ]
    if monitor in probe and not scored:  # a budget cut before any epoch was scored
        return {
            "kept": "probe",
            "monitor": monitor,
            "probe": float(probe[monitor]),
            "trained": None,
            "best_epoch": best_epoch,
            "message": f"kept the linear probe: no trained epoch was scored ({monitor} of the "
            f"probe {float(probe[monitor]):.4f})",
        }
    if monitor not in probe or not scored:
        return {
            "kept": "trained",
            "monitor": monitor,
            "probe": None,
            "trained": None,
            "best_epoch": best_epoch,
            "message": "no validation split: the trained model is kept without being checked "
            "against the linear probe (without --val 0, graft carves one out of train)",
        }
    probe_value = float(probe[monitor])
    trained = float(min(scored) if monitor == "val_loss" else max(scored))
    kept = "probe" if best_epoch == 0 else "trained"
    probe_shown, trained_shown = (shown_figure(v, monitor) for v in (probe_value, trained))
    beaten = (
        f"did better by more than one standard error ({shown_figure(margin, monitor)})"
        if margin
        else ("did better")
    )
    message = (
        f"kept the linear probe: {monitor} {probe_shown}; no trained epoch {beaten} "
        f"(best {trained_shown})"
        if kept == "probe"
        else f"kept the trained model (epoch {best_epoch}): {monitor} {trained_shown} vs the "
        f"linear probe's {probe_shown}"
    )
    return {
        "kept": kept,
        "monitor": monitor,
        "probe": probe_value,
        "trained": trained,
        "best_epoch": best_epoch,
        "margin": margin,
        "message": message,
    }
