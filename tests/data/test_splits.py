"""Splits: seeded, stratified, reproducible; subsets only touch training; manifests read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from graft.data.dataset import LabelledImages, Sample, read_labelled
from graft.data.splits import assign_splits, subset_train, write_manifest
from graft.errors import ConfigError


def _images(n_per_class: int = 50) -> LabelledImages:
    samples = [
        Sample(Path(f"{label}/{i}.png"), label)
        for label in ("a", "b", "c")
        for i in range(n_per_class)
    ]
    return LabelledImages(samples, "synthetic", "items")


def _assignment(images: LabelledImages) -> dict[str, str]:
    return {str(s.path): s.split or "" for s in images.samples}


def test_same_seed_same_split_other_seed_other_split() -> None:
    first = assign_splits(_images(), val=0.2, test=0.2, seed=3)
    again = assign_splits(_images(), val=0.2, test=0.2, seed=3)
    other = assign_splits(_images(), val=0.2, test=0.2, seed=4)
    assert _assignment(first) == _assignment(again)
    assert _assignment(first) != _assignment(other)


def test_split_is_stratified() -> None:
    counts = assign_splits(_images(), val=0.2, test=0.1, seed=0).counts()
    assert counts == {
        "train": {"a": 35, "b": 35, "c": 35},
        "val": {"a": 10, "b": 10, "c": 10},
        "test": {"a": 5, "b": 5, "c": 5},
    }


def test_default_is_a_20_percent_validation_split() -> None:
    counts = assign_splits(_images(10), seed=0).counts()
    assert set(counts) == {"train", "val"} and counts["val"] == {"a": 2, "b": 2, "c": 2}


def test_every_class_keeps_a_training_image() -> None:
    tiny = LabelledImages([Sample(Path("x.png"), "a"), Sample(Path("y.png"), "b")], "t", "items")
    assert all(s.split == "train" for s in assign_splits(tiny, val=0.5, seed=0).samples)


def test_given_splits_are_kept_and_val_carved_only_when_asked(split_folders: Path) -> None:
    images = read_labelled(split_folders)
    assert _assignment(assign_splits(images, val=0.3, seed=0)) == _assignment(images)
    no_val = images.with_samples([s for s in images.samples if s.split == "train"])
    carved = assign_splits(no_val, val=0.2, seed=0).counts()
    assert carved["val"] == {"blue": 2, "red": 2}
    assert assign_splits(no_val, seed=0).counts().keys() == {"train"}


@pytest.mark.parametrize(("val", "test"), [(1.2, None), (-0.1, None), (0.6, 0.5)])
def test_bad_fractions(val: float, test: float | None) -> None:
    with pytest.raises(ConfigError, match=r"--val|--test"):
        assign_splits(_images(), val=val, test=test)


def test_subsets_touch_only_training() -> None:
    split = assign_splits(_images(), val=0.2, seed=0)
    few = subset_train(split, per_class=3, seed=0).counts()
    assert few["train"] == {"a": 3, "b": 3, "c": 3}
    assert few["val"] == split.counts()["val"]
    limited = subset_train(split, limit=12, seed=0).counts()["train"]
    assert sum(limited.values()) == 12 and set(limited.values()) == {4}
    with pytest.raises(ConfigError, match=r"--per-class 0 must be at least 1"):
        subset_train(split, per_class=0)


def test_manifest_reads_back_as_the_same_split(split_folders: Path, tmp_path: Path) -> None:
    images = assign_splits(read_labelled(split_folders), seed=0)
    manifest = tmp_path / "split.csv"
    write_manifest(manifest, images.samples, ["h"] * len(images.samples))
    again = read_labelled(manifest)
    assert _assignment(again) == {str(s.path.resolve()): s.split for s in images.samples}
    assert [s.label for s in again.samples] == [s.label for s in images.samples]


def test_a_capped_run_carves_validation_from_the_images_its_cap_left_out(tmp_path: Path) -> None:
    from graft.data.prepare import DataOptions, prepare
    from synthetic import write_class_folders

    write_class_folders(tmp_path / "train", 30)
    write_class_folders(tmp_path / "test", 2, start=100)
    plain = prepare(tmp_path, DataOptions(per_class=5))
    carved = prepare(tmp_path, DataOptions(per_class=5, carve_val=0.1))
    # the same five training images per class as without the carve ...
    assert sorted(s.path for s in carved.images.split("train")) == sorted(
        s.path for s in plain.images.split("train")
    )
    # ... and a tenth of train (6 of 60) for validation, none of them a training image
    val = carved.images.split("val")
    assert len(val) == 6 and {s.label for s in val} == {"red", "blue"}
    assert not {s.path for s in val} & {s.path for s in carved.images.split("train")}
    assert carved.carved_val == 0.1
