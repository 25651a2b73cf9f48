"""Reading the three layouts, and every way a source can be wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graft.data.dataset import read_labelled
from graft.errors import DataError
from synthetic import write_class_folders


def test_class_folders(class_folders: Path) -> None:
    images = read_labelled(class_folders)
    assert images.layout == "class-folders"
    assert images.classes == ["blue", "red"]
    assert len(images.samples) == 24
    assert not images.has_splits


def test_split_folders_keep_their_splits(split_folders: Path) -> None:
    images = read_labelled(split_folders)
    assert images.layout == "split-folders"
    assert images.has_splits
    assert {name: sum(c.values()) for name, c in images.counts().items()} == {"train": 20, "val": 8}


def test_non_images_are_listed_not_fatal(class_folders: Path) -> None:
    (class_folders / "red" / "notes.txt").write_text("x")
    (class_folders / "stray.png").write_bytes(b"")
    images = read_labelled(class_folders)
    assert [p.name for p, _ in images.skipped] == ["notes.txt"]
    assert any("not in a class folder" in note for note in images.notes)


def test_empty_class_folder_is_noted(class_folders: Path) -> None:
    (class_folders / "green").mkdir()
    images = read_labelled(class_folders)
    assert images.classes == ["blue", "red"]
    assert any("green is empty" in note for note in images.notes)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such folder or file"):
        read_labelled(tmp_path / "nope")


def test_single_class_is_an_error(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "one", 3, classes=("red",))
    with pytest.raises(DataError, match=r"only one class \('red'\)"):
        read_labelled(root)


def test_folder_of_images_points_to_its_parent(class_folders: Path) -> None:
    with pytest.raises(DataError, match=r"no class folders: pass its parent"):
        read_labelled(class_folders / "red")


def test_one_level_off_names_the_folder_to_pass(tmp_path: Path, split_folders: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    shutil.move(str(split_folders), outer / "split")
    with pytest.raises(DataError, match=f"probably one level down: pass {outer / 'split'}"):
        read_labelled(outer)


def test_split_folder_passed_instead_of_its_parent(split_folders: Path) -> None:
    images = read_labelled(split_folders / "train")
    assert images.layout == "class-folders"  # a valid class-folder set on its own


def test_evaluation_class_without_training_images(split_folders: Path) -> None:
    write_class_folders(split_folders / "validation", 2, classes=("green",))
    with pytest.raises(DataError, match=r"the val split has classes that train lacks \(green\)"):
        read_labelled(split_folders)


def test_csv_with_header_and_kaggle_ids(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "imgs", 3)
    rows = (
        ["id,breed"]
        + [f"red/red_{i:03d},red" for i in range(3)]
        + [f"blue/blue_{i:03d},blue" for i in range(3)]
    )
    table = tmp_path / "labels.csv"
    table.write_text("\n".join(rows) + "\n")
    images = read_labelled(table, root=root)
    assert images.layout == "table" and len(images.samples) == 6
    assert images.samples[0].path == root / "red" / "red_000.png"


def test_whitespace_table_without_header_like_elpv(tmp_path: Path) -> None:
    write_class_folders(tmp_path, 2)
    table = tmp_path / "labels.txt"
    table.write_text(
        "red/red_000.png   1.0   mono\nred/red_001.png 1.0 poly\nblue/blue_000.png  0.0  mono\n"
    )
    images = read_labelled(table)
    assert [s.label for s in images.samples] == ["1.0", "1.0", "0.0"]


def test_tsv_with_split_column(tmp_path: Path) -> None:
    write_class_folders(tmp_path, 2)
    table = tmp_path / "data.tsv"
    table.write_text(
        "path\tlabel\tsplit\nred/red_000.png\tred\ttrain\nblue/blue_000.png\tblue\ttrain\n"
        "red/red_001.png\tred\tvalidation\nblue/blue_001.png\tblue\ttest\n"
    )
    images = read_labelled(table)
    assert [s.split for s in images.samples] == ["train", "train", "val", "test"]


def test_table_rows_naming_missing_images_are_skipped(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path, 2)
    table = tmp_path / "t.csv"
    table.write_text("red/red_000.png,red\nred/gone.png,red\nblue/blue_000.png,blue\n")
    images = read_labelled(table, root=root)
    assert len(images.samples) == 2
    assert "gone.png not found" in images.skipped[0][1]


def test_table_with_wrong_root_says_so(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "imgs", 2)
    table = tmp_path / "t.csv"
    table.write_text("red/red_000.png,red\nblue/blue_000.png,blue\n")
    with pytest.raises(DataError, match=r"none of the 2 listed images exist .* pass --root"):
        read_labelled(table)


def test_table_bad_split_value(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path, 1)
    table = tmp_path / "t.csv"
    table.write_text("path,label,split\nred/red_000.png,red,holdout\n")
    with pytest.raises(DataError, match=r"t.csv:2: split 'holdout' is not one of"):
        read_labelled(table, root=root)


@pytest.mark.parametrize(
    "text", ["image_file,kind\nx.png,a\n", "filename_x,label\nx.png,a\n"], ids=["both", "path"]
)
def test_table_with_unknown_header(tmp_path: Path, text: str) -> None:
    table = tmp_path / "t.csv"
    table.write_text(text)
    with pytest.raises(DataError, match=r"cannot tell the path and label columns"):
        read_labelled(table)


def test_table_with_one_column(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a.png\nb.png\n")
    with pytest.raises(DataError, match=r"expected at least two columns"):
        read_labelled(table)


def test_binary_file_as_table(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(DataError, match=r"not a text table"):
        read_labelled(table)


def test_root_for_a_folder_is_refused(class_folders: Path) -> None:
    with pytest.raises(DataError, match=r"--root .* only applies to a CSV/TSV"):
        read_labelled(class_folders, root=class_folders)
