"""The validation pass: problems listed and skipped, leakage found, imbalance flagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graft.data.dataset import read_labelled
from graft.data.scan import FileIndex
from graft.data.splits import assign_splits
from graft.data.validate import validate
from graft.errors import DataError
from synthetic import write_class_folders


def test_corrupt_truncated_and_fake_images_are_skipped(split_folders: Path) -> None:
    red = split_folders / "train" / "red"
    (red / "fake.png").write_text("not an image")
    good = (red / "red_000.png").read_bytes()
    (red / "empty.jpg").write_bytes(b"")
    (red / "cut.png").write_bytes(good[:20])
    report = validate(read_labelled(split_folders))
    assert sorted(p.name for p, _ in report.problems) == ["cut.png", "empty.jpg", "fake.png"]
    assert all("not a readable image" in reason for _, reason in report.problems)
    assert len(report.images.samples) == 28
    assert any("3 files are not usable images" in w for w in report.warnings)


def test_duplicates_across_splits_are_reported_and_deduped(split_folders: Path) -> None:
    shutil.copy(
        split_folders / "train" / "red" / "red_000.png",
        split_folders / "validation" / "red" / "copy.png",
    )
    report = validate(read_labelled(split_folders))
    assert len(report.duplicates) == 1
    assert any("appear in two splits" in w and "--dedupe" in w for w in report.warnings)
    deduped = validate(read_labelled(split_folders), dedupe=True)
    assert [s.path.name for s in deduped.dropped] == ["copy.png"]
    assert all(s.path.name != "copy.png" for s in deduped.images.samples)
    assert len(deduped.hashes) == len(deduped.images.samples)


def test_identical_images_with_different_labels(split_folders: Path) -> None:
    shutil.copy(
        split_folders / "train" / "red" / "red_000.png",
        split_folders / "train" / "blue" / "odd.png",
    )
    report = validate(read_labelled(split_folders))
    assert any("carry different labels" in w for w in report.warnings)


def test_imbalance_and_tiny_classes_are_flagged(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "d", 12, classes=("red",))
    write_class_folders(root, 3, classes=("blue",))
    report = validate(assign_splits(read_labelled(root), val=0.0, seed=0))
    assert any(
        "strong class imbalance" in w and "--class-weight balanced" in w for w in report.warnings
    )
    assert any("fewer than 5 training images (blue)" in w for w in report.warnings)


def test_nothing_usable_in_one_class_is_an_error(split_folders: Path) -> None:
    for image in (split_folders / "train" / "blue").iterdir():
        image.write_text("broken")
    with pytest.raises(DataError, match=r"training split has .* in 1 class"):
        validate(read_labelled(split_folders))


def test_fingerprint_changes_with_content(split_folders: Path) -> None:
    before = validate(read_labelled(split_folders)).fingerprint()
    write_class_folders(split_folders / "train", 1, classes=("red",), start=50)
    assert validate(read_labelled(split_folders)).fingerprint() != before


def test_scan_reads_unchanged_files_once(
    split_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graft.data import scan

    files = sorted((split_folders / "train" / "red").iterdir())
    index = FileIndex(tmp_path / "index.sqlite")
    first = index.scan(files)
    reads: list[str] = []
    real_read = scan._read
    monkeypatch.setattr(scan, "_read", lambda path: reads.append(path) or real_read(path))
    assert index.scan(files) == first
    assert reads == []
    files[0].write_bytes(files[1].read_bytes())
    changed = index.scan(files)
    assert reads == [str(files[0])]
    assert changed[0].content_hash == first[1].content_hash


def test_scan_applies_the_pixel_limit(
    split_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted((split_folders / "train" / "red").iterdir())[:1]
    monkeypatch.setenv("GRAFT_MAX_PIXELS", "100")
    (info,) = FileIndex(tmp_path / "i.sqlite").scan(files)
    assert info.problem is not None and "exceeds the pixel limit of 100" in info.problem
