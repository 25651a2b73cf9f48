"""The networks graft builds and loads: a backbone with a new head, and a run's trained model.

Example:
    >>> from graft.models import build_transfer_model
    >>> callable(build_transfer_model)
    True
"""

from graft.models.loading import (
    feature_specs,
    load_neural_model,
    load_run_model,
    model_preprocessing,
    probe_network,
    record_of_run,
    transfer_model_from_run,
)
from graft.models.run_model import Probabilities, ProbeNetwork, RunModel
from graft.models.transfer import HeadConfig, NeuralHead, TransferModel, build_transfer_model

__all__ = [
    "HeadConfig",
    "NeuralHead",
    "Probabilities",
    "ProbeNetwork",
    "RunModel",
    "TransferModel",
    "build_transfer_model",
    "feature_specs",
    "load_neural_model",
    "load_run_model",
    "model_preprocessing",
    "probe_network",
    "record_of_run",
    "transfer_model_from_run",
]
