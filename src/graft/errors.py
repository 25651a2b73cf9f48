"""The exceptions graft raises for bad input.

Every error graft raises on purpose is a :class:`GraftError`. Its message is one line that names
the file or value at fault, says what was expected, and gives the fix, in the spirit of Keras'
``Received: weights=...`` messages. The CLI prints that line and exits non-zero; nothing else
is lost because every write graft makes is atomic.

Example:
    >>> from graft.errors import DataError
    >>> try:
    ...     raise DataError("cat.jpg: not an image (expected JPEG, PNG, ...); remove the file")
    ... except DataError as err:
    ...     print(err)
    cat.jpg: not an image (expected JPEG, PNG, ...); remove the file
"""

from __future__ import annotations


class GraftError(Exception):
    """Base class of every error graft raises for bad input or a bad environment."""


class DataError(GraftError):
    """An image, folder, CSV or label set is unusable."""


class WeightsError(GraftError):
    """A weight file is missing, corrupt, unsafe, or does not fit its architecture."""


class ConfigError(GraftError):
    """A name, option or value is not one graft knows (unknown backbone, bad top-k...)."""


class NetworkError(GraftError):
    """A download was asked for but the network could not be reached."""
