"""Fixtures shared by the suite: sample photos, synthetic images, and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from graft.datasets import sample_photos

#: The real datasets beside the project (a fresh user clone does not have them).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """scikit-image's sample photos (chelsea the cat, coffee, astronaut, rocket)."""
    return sample_photos()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``, or skip the test cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
