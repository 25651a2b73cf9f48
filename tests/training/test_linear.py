"""The linear probe end to end: run directory, Predictor, evaluate, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import graft
from graft.cli import app
from graft.data.prepare import DataOptions
from graft.errors import ConfigError, DataError
from graft.runs import read_predictions
from graft.training import LinearOptions, train_linear
from synthetic import tinted_image, write_class_folders

FAST = LinearOptions(engine="torch")
runner = CliRunner()


@pytest.fixture
def run(split_folders: Path, tmp_path: Path) -> graft.training.RunResult:
    return train_linear(split_folders, out=tmp_path / "run", options=FAST)


def test_run_directory_describes_itself(run: graft.training.RunResult) -> None:
    files = sorted(p.name for p in run.run_dir.iterdir())
    assert files == [
        "config.json",
        "head.safetensors",
        "metrics.json",
        "predictions_val.csv",
        "split.csv",
    ]
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["strategy"] == "linear" and config["classes"] == ["blue", "red"]
    (features,) = config["features"]
    assert features["backbone"] == "efficientnet_lite0.in1k"
    assert features["weights_sha256"].startswith("579344248a93")
    assert features["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert config["head"]["params"]["C"] > 0 and config["seed"] == 0
    assert len(config["data"]["fingerprint"]) == 24 and config["data"]["counts"]["train"] == {
        "blue": 10,
        "red": 10,
    }
    assert {"torch", "timm", "scikit-learn", "numpy", "python"} <= set(config["versions"])
    assert run.metrics["val"]["accuracy"] == 1.0
    assert json.loads((run.run_dir / "metrics.json").read_text())["val"]["n"] == 8
    paths, _, proba, classes = read_predictions(run.run_dir / "predictions_val.csv")
    assert classes == ["blue", "red"] and len(paths) == 8 and proba.shape == (8, 2)


@pytest.mark.slow
def test_predictor_takes_paths_pil_images_and_arrays(run: graft.training.RunResult) -> None:
    predictor = graft.load(run.run_dir)
    paths, truth, proba, _ = read_predictions(run.run_dir / "predictions_val.csv")
    predictions = predictor.predict(paths)
    assert [p.label for p in predictions] == truth
    np.testing.assert_allclose(
        [[p.probabilities[c] for c in predictor.classes] for p in predictions], proba, atol=1e-4
    )
    pil = tinted_image((200, 40, 40), seed=1234)
    array = np.asarray(tinted_image((40, 40, 200), seed=99))
    gray = np.asarray(pil.convert("L"))
    results = predictor.predict([pil, array, gray])
    assert [r.label for r in results[:2]] == ["red", "blue"]
    assert results[2].error is None


def test_predictor_reports_bad_inputs_and_keeps_going(
    run: graft.training.RunResult, tmp_path: Path
) -> None:
    predictor = graft.load(run.run_dir)
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    good = next((run.run_dir.parent / "split" / "validation" / "red").iterdir())
    results = predictor.predict([bad, good, np.zeros((4, 4), np.float32)])
    assert "bad.jpg: not a readable image" in (results[0].error or "")
    assert results[1].label == "red"
    assert "expected H x W x 3" in (results[2].error or "")
    with pytest.raises(DataError, match=r"not a readable image"):
        predictor.predict_proba([bad])


def test_evaluate_uses_saved_predictions_or_new_data(
    run: graft.training.RunResult, split_folders: Path
) -> None:
    saved = graft.evaluate(run.run_dir)
    assert saved["split"] == "val" and saved["accuracy"] == run.metrics["val"]["accuracy"]
    fresh = graft.evaluate(run.run_dir, data=split_folders, split="val")
    assert fresh["n"] == 8 and fresh["accuracy"] == 1.0
    with pytest.raises(ConfigError, match=r"no test split"):
        graft.evaluate(run.run_dir, split="test")


def test_evaluate_on_data_with_other_classes(run: graft.training.RunResult, tmp_path: Path) -> None:
    other = write_class_folders(tmp_path / "other", 2, classes=("red", "green"))
    with pytest.raises(DataError, match=r"classes green are not classes of the run"):
        graft.evaluate(run.run_dir, data=other)


def test_existing_out_needs_overwrite(run: graft.training.RunResult, split_folders: Path) -> None:
    with pytest.raises(ConfigError, match=r"already exists; pass --overwrite"):
        train_linear(split_folders, out=run.run_dir, options=FAST)
    again = train_linear(split_folders, out=run.run_dir, options=FAST, overwrite=True)
    assert again.extraction["computed"] == 0  # every feature came from the cache


def test_split_manifest_reproduces_the_run(class_folders: Path, tmp_path: Path) -> None:
    first = train_linear(
        class_folders, out=tmp_path / "a", options=FAST, data_options=DataOptions(val=0.25, seed=7)
    )
    second = train_linear(tmp_path / "a" / "split.csv", out=tmp_path / "b", options=FAST)
    assert (tmp_path / "a" / "split.csv").read_text() == (tmp_path / "b" / "split.csv").read_text()
    assert first.metrics == second.metrics
    assert (
        json.loads((tmp_path / "a" / "config.json").read_text())["data"]["fingerprint"]
        == json.loads((tmp_path / "b" / "config.json").read_text())["data"]["fingerprint"]
    )


def test_corrupt_files_are_skipped_and_listed(split_folders: Path, tmp_path: Path) -> None:
    (split_folders / "train" / "red" / "broken.png").write_text("x")
    result = train_linear(split_folders, out=tmp_path / "run", options=FAST)
    skipped = (tmp_path / "run" / "skipped.csv").read_text()
    assert "broken.png" in skipped and result.metrics["val"]["n"] == 8


@pytest.mark.parametrize("head", ["svm", "knn", "centroid"])
def test_other_heads_train_and_load(split_folders: Path, tmp_path: Path, head: str) -> None:
    result = train_linear(
        split_folders, out=tmp_path / head, options=LinearOptions(engine="torch", head=head)
    )
    assert result.metrics["val"]["accuracy"] >= 0.75  # 8 images: one or two errors allowed
    assert graft.load(result.run_dir).head.kind == head


@pytest.mark.slow
def test_two_backbones_concatenate(split_folders: Path, tmp_path: Path) -> None:
    options = LinearOptions(engine="torch", backbone="efficientnet_lite0.in1k,squeezenet1_1.in1k")
    result = train_linear(split_folders, out=tmp_path / "both", options=options)
    predictor = graft.load(result.run_dir)
    assert len(predictor.specs) == 2
    assert predictor.head.arrays["mean"].shape == (1280 + 512,)
    image = Image.open(next((split_folders / "validation" / "blue").iterdir()))
    assert predictor.predict([image])[0].label == "blue"


def test_cli_train_and_evaluate_json(split_folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-run"
    trained = runner.invoke(
        app, ["train", str(split_folders), "--out", str(out), "--engine", "torch", "--json"]
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["metrics"]["val"]["accuracy"] == 1.0
    evaluated = runner.invoke(app, ["evaluate", str(out), "--json"])
    document = json.loads(evaluated.stdout)
    assert {"accuracy", "macro_f1", "n", "per_class"} <= set(document)
    table = runner.invoke(app, ["evaluate", str(out)])
    assert table.exit_code == 0 and "precision" in table.stdout


def test_cli_train_table_output(class_folders: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(class_folders),
            "--out",
            str(tmp_path / "r"),
            "--engine",
            "torch",
            "--val",
            "0.25",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "run saved to" in result.stdout


def test_cli_rejects_unknown_strategy(class_folders: Path) -> None:
    result = runner.invoke(app, ["train", str(class_folders), "--strategy", "magic"])
    assert isinstance(result.exception, ConfigError)


def test_cli_extract_and_cache(class_folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.safetensors"
    extracted = runner.invoke(
        app,
        [
            "extract",
            str(class_folders),
            "--out",
            str(out),
            "--engine",
            "torch",
            "--layer",
            "stage4",
        ],
    )
    assert extracted.exit_code == 0, extracted.output
    features = graft.features.load_features(out)
    assert features.features.shape == (24, 112) and features.classes == ["blue", "red"]
    assert features.specs[0]["layer"] == "stage4"
    info = runner.invoke(app, ["cache", "info"])
    assert "stage4" in info.stdout and "24" in info.stdout
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "weight store is kept" in cleared.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_potato_disease_with_few_training_images(shared_data: Path, tmp_path: Path) -> None:
    """Real leaves, 30 training images per class: transfer already separates the diseases."""
    result = train_linear(
        shared_data / "potato_disease",
        out=tmp_path / "potato",
        data_options=DataOptions(per_class=30, seed=0),
    )
    assert result.report.images.counts()["train"] == {
        "Potato___Early_blight": 30,
        "Potato___Late_blight": 30,
        "Potato___healthy": 30,
    }
    assert result.metrics["test"]["n"] == 433
    assert result.metrics["test"]["accuracy"] > 0.85
