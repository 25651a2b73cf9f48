"""Data that installs with graft, so every example works on a fresh, offline machine.

* :func:`sample_photos`: the photos scikit-image ships (chelsea the cat, coffee, astronaut,
  rocket), for trying the pretrained classifier.
* :func:`elpv`: the ELPV solar-cell dataset (2,624 electroluminescence images, PyPI package
  ``elpv-dataset``; data licence CC BY-NC-SA 4.0, Deitsch et al. 2019), returned in place as
  ``(path, label)`` pairs, without copying any image.

Example:
    >>> items = elpv("binary")
    >>> len(items), sorted({label for _, label in items})
    (2624, ['defective', 'functional'])
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Literal

from graft.errors import ConfigError, DataError

ElpvTask = Literal["binary", "four_class"]

#: ELPV's four defect probabilities, as the class names of the ``four_class`` task.
ELPV_FOUR_CLASS = {0.0: "0", 1 / 3: "0.33", 2 / 3: "0.67", 1.0: "1"}
_SAMPLE_FILES = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
}


def sample_photos() -> dict[str, Path]:
    """Return the scikit-image sample photos by name (files inside the installed package).

    Raises:
        DataError: scikit-image is not installed or lacks a photo.

    Example:
        >>> sorted(sample_photos())
        ['astronaut', 'chelsea', 'coffee', 'rocket']
    """
    root = _package_dir("skimage", "scikit-image") / "data"
    photos = {name: root / file for name, file in _SAMPLE_FILES.items()}
    missing = [str(path) for path in photos.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"scikit-image's sample photos are missing ({', '.join(missing)}); reinstall it: "
            "pip install --force-reinstall scikit-image"
        )
    return photos


def elpv_root() -> Path:
    """Return the folder holding ELPV's ``labels.csv`` and ``images/``."""
    return _package_dir("elpv_dataset", "elpv-dataset") / "data"


def elpv(task: ElpvTask = "binary") -> list[tuple[Path, str]]:
    """Return the ELPV images with their labels, in the order of ``labels.csv``.

    Args:
        task: ``binary``: ``defective`` when the defect probability is at least 0.5, else
            ``functional`` (the published benchmark's task). ``four_class``: the defect
            probability itself, as ``"0"``, ``"0.33"``, ``"0.67"`` or ``"1"``.

    Raises:
        ConfigError: Unknown task.
        DataError: The package is missing or its label file is malformed.
    """
    if task not in ("binary", "four_class"):
        raise ConfigError(f"ELPV task {task!r} is not one of: binary, four_class")
    root = elpv_root()
    labels_file = root / "labels.csv"
    items: list[tuple[Path, str]] = []
    with open(labels_file, encoding="utf-8") as handle:
        for line_number, row in enumerate(
            csv.reader(handle, delimiter=" ", skipinitialspace=True), 1
        ):
            if not row:
                continue
            try:
                relative, probability = row[0], float(row[1])
            except (IndexError, ValueError) as err:
                raise DataError(
                    f"{labels_file}:{line_number}: expected 'path probability type', got {row!r}"
                ) from err
            items.append((root / relative, _elpv_label(probability, task)))
    return items


def _elpv_label(probability: float, task: ElpvTask) -> str:
    if task == "binary":
        return "defective" if probability >= 0.5 else "functional"
    closest = min(ELPV_FOUR_CLASS, key=lambda p: abs(p - probability))
    return ELPV_FOUR_CLASS[closest]


def _package_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the package {distribution!r} is not installed; run: pip install {distribution}"
        )
    return Path(next(iter(spec.submodule_search_locations)))
