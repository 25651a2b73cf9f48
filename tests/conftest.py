"""Fixtures shared by the suite: sample photos, synthetic images, and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from graft.datasets import sample_photos
from synthetic import write_class_folders

#: The network guard's modules are imported by the root conftest and by sitecustomize, not
#: collected as tests.
collect_ignore = ["netguard"]

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


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """Two classes (red, blue), 12 images each, no splits."""
    return write_class_folders(tmp_path / "colors", 12)


@pytest.fixture
def split_folders(tmp_path: Path) -> Path:
    """train (10 per class) and validation (4 per class) folders of red/blue images."""
    root = tmp_path / "split"
    write_class_folders(root / "train", 10)
    write_class_folders(root / "validation", 4, start=100)
    return root
