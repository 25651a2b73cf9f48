"""Training strategies. ``linear`` (the default): a classic head on cached backbone features.

Example:
    >>> from graft.training import STRATEGIES
    >>> STRATEGIES
    ('linear',)
"""

from graft.training.linear import STRATEGIES, LinearOptions, RunResult, train

__all__ = ["STRATEGIES", "LinearOptions", "RunResult", "train"]
