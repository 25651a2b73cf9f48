"""Several runs on one split, trained and compared: ``graft compare`` and ``--strategy auto``.

Example:
    >>> from graft.ladder.auto import parse_budget
    >>> parse_budget("2m")
    120.0
"""
