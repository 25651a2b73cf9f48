"""Folder walks: sorted, recursive, hidden files ignored, non-images reported."""

from __future__ import annotations

from pathlib import Path

from graft.data import collect_images


def test_walk_is_sorted_recursive_and_reports_non_images(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ["b/z.png", "a.JPG", "b/a.webp", ".hidden/x.jpg", ".DS_Store", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    found = collect_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found.images] == [
        "a.JPG",
        "b/a.webp",
        "b/z.png",
    ]
    assert [p.name for p, _ in found.skipped] == ["notes.txt"]
    assert "not an image file extension" in found.skipped[0][1]


def test_explicit_files_are_taken_whatever_their_extension(tmp_path: Path) -> None:
    odd = tmp_path / "scan.dat"
    odd.write_bytes(b"")
    found = collect_images([odd, tmp_path / "missing.png"])
    assert found.images == [odd]
    assert [p.name for p, _ in found.missing] == ["missing.png"]
