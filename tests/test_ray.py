"""Ray Data extraction and prediction on a local 2-CPU instance equal the single-machine path."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

import graft
from graft.errors import ConfigError
from graft.features.dataset import extract_dataset
from graft.features.extract import FeatureSpec
from graft.scaleout.ray_data import (
    expand_paths,
    extract_with_ray,
    predict_with_ray,
    read_parquet_folder,
)
from graft.training.linear import LinearOptions, train_linear
from synthetic import write_class_folders


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import os

    import ray

    os.environ["GRAFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("ray-cache"))  # for the workers
    from graft.scaleout.ray_data import start_ray

    start_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray-data") / "data"
    write_class_folders(root / "train", 100)
    write_class_folders(root / "val", 20, start=500)
    (root / "train" / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.slow
def test_ray_features_equal_the_single_machine_ones(
    ray_instance: None, data: Path, tmp_path: Path
) -> None:
    result = extract_with_ray(data, tmp_path / "out", engine="torch", actors=1)
    assert result.rows == 240 and result.failed == 1
    with open(tmp_path / "out" / "errors.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == ["broken.png"]
    table = read_parquet_folder(tmp_path / "out" / "features")
    local = extract_dataset(data, [FeatureSpec.create("efficientnet_lite0.in1k")], engine="torch")
    order = np.argsort(np.array([str(p) for p in local.paths], dtype=object))
    assert [str(local.paths[i]) for i in order] == table["path"]
    assert [local.labels[i] for i in order] == table["label"]
    np.testing.assert_allclose(table["features"], local.features[order], atol=1e-4)


@pytest.mark.slow
def test_ray_predictions_equal_the_single_machine_ones(
    ray_instance: None, data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train_linear(data, out=run, options=LinearOptions(engine="torch"))
    manifest = tmp_path / "images.txt"
    images = sorted((data / "val").rglob("*.png"))
    manifest.write_text("\n".join(str(p) for p in images) + "\n")
    assert expand_paths([manifest]) == images
    result = predict_with_ray(run, [manifest], tmp_path / "out", backend="torch")
    assert result.rows == 40 and result.failed == 0
    table = read_parquet_folder(tmp_path / "out" / "predictions")
    local = graft.load(run, backend="torch").predict(images)
    assert table["path"] == [str(p) for p in images]
    assert table["label"] == [p.label for p in local]
    expected = np.array([[p.probabilities[c] for c in ("blue", "red")] for p in local])
    np.testing.assert_allclose(table["probabilities"], expected, atol=1e-5)


@pytest.mark.slow
def test_an_output_folder_graft_did_not_write_is_refused_before_ray_starts(
    data: Path, tmp_path: Path
) -> None:
    """OUT/features that is not graft's (no OUT/features.json) is never replaced."""
    mine = tmp_path / "out" / "features"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"exists and graft did not write it"):
        extract_with_ray(data, tmp_path / "out")
    assert (mine / "notes.txt").read_text() == "mine"
