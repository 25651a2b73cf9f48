"""The run directory, shared by every strategy: its files (:mod:`graft.runs.files`) and its
``config.json`` as typed records (:mod:`graft.runs.config`).

Example:
    >>> MANIFEST, predictions_file("test")
    ('split.csv', 'predictions_test.csv')
"""

from graft.runs.config import (
    BackboneEntry,
    DataEntry,
    HeadEntry,
    PhaseEntry,
    RunConfig,
    Timings,
    read_run_config,
)
from graft.runs.files import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    CONFIG,
    EXPORTS,
    HEAD,
    HISTORY,
    MANIFEST,
    METRICS,
    MODEL,
    REPORT,
    RUN_FORMAT,
    SKIPPED,
    check_replaceable,
    is_graft_run,
    predictions_file,
    read_config,
    read_predictions,
    remove_run,
    staged_run_dir,
    write_config,
    write_predictions,
    write_skipped,
)

__all__ = [
    "CHECKPOINT_BEST",
    "CHECKPOINT_LAST",
    "CONFIG",
    "EXPORTS",
    "HEAD",
    "HISTORY",
    "MANIFEST",
    "METRICS",
    "MODEL",
    "REPORT",
    "RUN_FORMAT",
    "SKIPPED",
    "BackboneEntry",
    "DataEntry",
    "HeadEntry",
    "PhaseEntry",
    "RunConfig",
    "Timings",
    "check_replaceable",
    "is_graft_run",
    "predictions_file",
    "read_config",
    "read_predictions",
    "read_run_config",
    "remove_run",
    "staged_run_dir",
    "write_config",
    "write_predictions",
    "write_skipped",
]
