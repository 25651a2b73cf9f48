"""Nothing lost, nothing let in: runs never destroy what graft did not write, the data walk
reads only regular image files, and a folder one level too high is refused."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from graft.cli import app
from graft.data.dataset import read_labelled
from graft.data.images import ChangedFileError, NotAnImageError, load_image
from graft.data.scan import FileIndex, default_index_path
from graft.data.validate import validate
from graft.errors import ConfigError, DataError
from graft.faults import InjectedCrash
from graft.features.extract import FeatureSpec, extract_features
from graft.training import LinearOptions, NeuralOptions, train_linear, train_neural
from synthetic import write_class_folders

FAST = LinearOptions(engine="torch")
runner = CliRunner()


# -- --overwrite ---------------------------------------------------------------------------


@pytest.mark.slow
def test_overwrite_never_deletes_a_data_folder(split_folders: Path) -> None:
    """The measured bug: `graft train DATA --out DATA --overwrite` deleted the dataset."""
    before = sorted(p.relative_to(split_folders) for p in split_folders.rglob("*"))
    result = runner.invoke(
        app, ["train", str(split_folders), "--out", str(split_folders), "--overwrite"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "is not a graft run" in str(result.exception)
    assert str(split_folders) in str(result.exception)
    assert sorted(p.relative_to(split_folders) for p in split_folders.rglob("*")) == before


@pytest.mark.parametrize("strategy", ["linear", "head"])
def test_overwrite_refuses_any_folder_graft_did_not_write(
    split_folders: Path, tmp_path: Path, strategy: str
) -> None:
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    (precious / "config.json").write_text('{"not": "a graft run"}')
    options = NeuralOptions(strategy="head", epochs=1, engine="torch", workers=0)

    def train() -> object:
        if strategy == "linear":
            return train_linear(split_folders, out=precious, options=FAST, overwrite=True)
        return train_neural(split_folders, out=precious, options=options, overwrite=True)

    with pytest.raises(ConfigError, match=r"thesis exists and is not a graft run"):
        train()
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_overwrite_replaces_a_graft_run(split_folders: Path, tmp_path: Path) -> None:
    first = train_linear(split_folders, out=tmp_path / "run", options=FAST)
    (first.run_dir / "mine.txt").write_text("left in the old run")
    train_linear(split_folders, out=tmp_path / "run", options=FAST, overwrite=True)
    assert not (first.run_dir / "mine.txt").exists() and (first.run_dir / "config.json").is_file()


@pytest.mark.slow
def test_writes_into_a_run_replace_planted_links(split_folders: Path, tmp_path: Path) -> None:
    """A symbolic link planted in a run directory is replaced, never written through."""
    options = NeuralOptions(strategy="head", epochs=2, engine="torch", workers=0, batch_size=8)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_FAULT", "neural.after-model")
        with pytest.raises(InjectedCrash):
            train_neural(split_folders, out=tmp_path / "run", options=options)
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists()  # the crash came before the evaluation
    (run / "predictions_val.csv").symlink_to(victim)
    (run / "metrics.json").symlink_to(victim)
    train_neural(None, resume=run)
    assert victim.read_text() == "untouched"
    assert not (run / "predictions_val.csv").is_symlink()
    assert (run / "predictions_val.csv").read_text().startswith("path,true,predicted")


# -- a wrong root ----------------------------------------------------------------------------


def test_a_folder_of_split_datasets_is_refused(tmp_path: Path) -> None:
    """The measured bug: the folder holding three datasets trained a 3-class 'classifier'."""
    for name in ("cats_and_dogs", "potato"):
        write_class_folders(tmp_path / "all" / name / "train", 3)
        write_class_folders(tmp_path / "all" / name / "test", 2, start=50)
    with pytest.raises(DataError, match=r"look like datasets themselves") as caught:
        read_labelled(tmp_path / "all")
    assert str(tmp_path / "all" / "cats_and_dogs") in str(caught.value)


def test_a_folder_of_class_folder_datasets_is_refused(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "all" / "flowers", 3, classes=("red", "blue"))
    write_class_folders(tmp_path / "all" / "leaves", 3, classes=("red", "green"))
    with pytest.raises(DataError, match=r"pass one dataset folder"):
        read_labelled(tmp_path / "all")


def test_nested_folders_inside_some_classes_are_still_read(tmp_path: Path) -> None:
    """A class folder with sub-folders is fine when the others hold images directly."""
    root = write_class_folders(tmp_path / "data", 3)
    write_class_folders(root / "red" / "extra", 2, classes=("green", "blue"))
    images = read_labelled(root)
    assert images.classes == ["blue", "red"] and len(images.samples) == 10


def test_cli_names_the_folder_of_datasets(shared_data: Path) -> None:
    result = runner.invoke(app, ["train", str(shared_data)])
    assert isinstance(result.exception, DataError)
    assert "look like datasets themselves" in str(result.exception)
    assert "cats_and_dogs_filtered" in str(result.exception)


# -- the data walk ---------------------------------------------------------------------------


def _in_thread(target: object, seconds: float = 60) -> object:
    """Run ``target`` in a thread; fail (instead of hanging the suite) if it blocks."""
    out: dict[str, object] = {}

    def work() -> None:
        try:
            out["value"] = target()  # type: ignore[operator]
        except BaseException as err:
            out["error"] = err

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked reading a file that is not a regular file"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(split_folders: Path) -> None:
    os.mkfifo(split_folders / "train" / "red" / "pipe.jpg")
    report = _in_thread(lambda: validate(read_labelled(split_folders)))
    problems = {p.name: reason for p, reason in report.problems}  # type: ignore[attr-defined]
    assert "pipe.jpg" in problems and "a FIFO" in problems["pipe.jpg"]
    with pytest.raises(DataError, match=r"not a regular file \(a FIFO\)"):
        _in_thread(lambda: load_image(split_folders / "train" / "red" / "pipe.jpg"))


def test_a_link_to_a_device_is_skipped(split_folders: Path) -> None:
    (split_folders / "train" / "red" / "zero.png").symlink_to("/dev/zero")
    report = _in_thread(lambda: validate(read_labelled(split_folders)))
    problems = {p.name: reason for p, reason in report.problems}  # type: ignore[attr-defined]
    assert "a device" in problems["zero.png"]


def test_formats_outside_the_allow_list_are_refused_by_name(tmp_path: Path) -> None:
    eps = tmp_path / "figure.png"
    Image.new("RGB", (16, 16)).save(eps, format="EPS")
    with pytest.raises(NotAnImageError, match=r"figure.png: unsupported format EPS"):
        load_image(eps)
    index = FileIndex(tmp_path / "index.sqlite")
    (info,) = index.scan([eps])
    assert info.problem is not None and "unsupported format EPS" in info.problem


def test_a_file_changed_under_the_same_size_and_time_is_noticed(tmp_path: Path) -> None:
    """Same size, same mtime, other bytes: the remembered hash is not trusted blindly."""
    folder = write_class_folders(tmp_path / "d", 1, classes=("red", "blue"))
    red = folder / "red" / "red_000.png"
    spec = FeatureSpec.create("efficientnet_lite0.in1k")
    index = FileIndex(default_index_path())
    (scanned,) = index.scan([red])
    stat = red.stat()
    with open(red, "r+b") as handle:  # new bytes, same length: a different image
        original = handle.read()
        handle.seek(0)
        handle.write(bytes(b ^ 0xFF if i > 200 else b for i, b in enumerate(original)))
    os.utime(red, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert red.stat().st_size == stat.st_size and red.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(ChangedFileError, match=r"changed since graft scanned it"):
        load_image(red, expected_hash=scanned.content_hash)
    result = extract_features([red], spec, engine="torch")
    assert not result.ok[0] and "changed since graft scanned it" in result.failures[0][1]
    (rescanned,) = index.scan([red])  # forgotten after the failure: read again
    assert rescanned.content_hash != scanned.content_hash
    index.close()
