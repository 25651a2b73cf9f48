"""The networks graft builds and loads: a backbone with a new head, and a run's trained model.

Example:
    >>> from graft.models import build_transfer_model
    >>> callable(build_transfer_model)
    True
"""

from graft.models.loading import load_neural_model, record_of_run
from graft.models.transfer import HeadConfig, NeuralHead, TransferModel, build_transfer_model

__all__ = [
    "HeadConfig",
    "NeuralHead",
    "TransferModel",
    "build_transfer_model",
    "load_neural_model",
    "record_of_run",
]
