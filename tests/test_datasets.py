"""The embedded data: ELPV labels in place, and the sample photos."""

from __future__ import annotations

from collections import Counter

import pytest

from graft.datasets import elpv, elpv_root, sample_photos
from graft.errors import ConfigError


def test_elpv_binary_counts_and_paths() -> None:
    items = elpv("binary")
    assert len(items) == 2624
    assert Counter(label for _, label in items) == {"functional": 1803, "defective": 821}
    assert all(path.is_file() and path.parent.parent == elpv_root() for path, _ in items[:50])


def test_elpv_four_classes() -> None:
    counts = Counter(label for _, label in elpv("four_class"))
    assert counts == {"0": 1508, "0.33": 295, "0.67": 106, "1": 715}


def test_elpv_unknown_task() -> None:
    with pytest.raises(ConfigError, match=r"ELPV task 'ternary' is not one of"):
        elpv("ternary")  # type: ignore[arg-type]


def test_sample_photos_exist() -> None:
    assert all(path.is_file() for path in sample_photos().values())
