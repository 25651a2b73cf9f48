"""Test-time augmentation: a flip averages an image's and its mirror's probabilities, in every
place a run predicts (predict, evaluate, export) and as a run's recorded choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import graft
from graft.errors import ConfigError
from graft.export import export_model
from graft.training import NeuralOptions, train_neural
from synthetic import write_class_folders

QUICK = {"engine": "torch", "precision": "fp32"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tta")
    write_class_folders(root / "train", 8)
    write_class_folders(root / "validation", 3, start=100)
    return root


@pytest.fixture(scope="module")
def linear_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("linear") / "run"
    graft.train(data, strategy="linear", out=out, **QUICK)
    return out


@pytest.fixture(scope="module")
def unsure_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network whose head stays at its random start (a vanishing learning rate, no probe
    start, no safeguard): its probabilities stay near 0.5, so different views of an image get
    visibly different probabilities."""
    out = tmp_path_factory.mktemp("unsure") / "run"
    options = NeuralOptions(
        strategy="head",
        epochs=1,
        lr=1e-12,
        head_init="random",
        safeguard=False,
        augment="none",
        workers=0,
        batch_size=4,
        **QUICK,
    )
    train_neural(data, out=out, options=options)
    return out


def _lopsided(folder: Path) -> list[Path]:
    """Purple images between the red and blue classes, whose left part differs from the
    right (so the probe is unsure and the mirror changes its answer), and their mirrors."""
    folder.mkdir(exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for i, colour in enumerate([(120, 40, 120), (130, 40, 110), (110, 40, 130)]):
        pixels = np.full((96, 96, 3), colour, dtype=np.uint8)
        pixels[:, : 24 + 8 * i] = rng.integers(0, 255, (96, 24 + 8 * i, 3))
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        ImageOps.mirror(Image.fromarray(pixels)).save(folder / f"img{i}-mirror.png")
        paths.append(path)
    return paths


def test_flip_averages_the_image_and_its_mirror(linear_run: Path, tmp_path: Path) -> None:
    paths = _lopsided(tmp_path)
    mirrors = [p.with_name(p.stem + "-mirror.png") for p in paths]
    plain = graft.load(linear_run)
    assert plain.tta == "none"
    one, other = plain.predict_proba(paths), plain.predict_proba(mirrors)
    assert np.abs(one - other).max() > 5e-5  # the mirror is a different input here
    flipped = graft.load(linear_run, tta="flip")
    np.testing.assert_allclose(flipped.predict_proba(paths), (one + other) / 2, atol=1e-6)
    # predict_files (evaluation's path) takes the flip too, not the cached unflipped features
    proba, ok, _ = flipped.predict_files(paths)
    assert ok.all()
    np.testing.assert_allclose(proba, (one + other) / 2, atol=1e-6)


def test_evaluate_with_flip_predicts_again_and_says_so(linear_run: Path) -> None:
    saved = graft.evaluate(linear_run)
    again = graft.evaluate(linear_run, tta="flip")
    assert saved["tta"] == "none" and again["tta"] == "flip"
    assert again["n"] == saved["n"] and again["split"] == saved["split"]
    # the run's saved predictions are untouched
    assert graft.evaluate(linear_run)["accuracy"] == saved["accuracy"]


@pytest.mark.slow
def test_the_exported_graph_contains_the_flip(linear_run: Path, tmp_path: Path) -> None:
    import onnx

    result = export_model(linear_run, format="onnx", out=tmp_path / "flip.onnx", tta="flip")
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert meta["tta"] == "flip" and json.loads(meta["graft"])["tta"] == "flip"
    paths = _lopsided(tmp_path / "images")
    exported = graft.load(linear_run, backend="onnx", model_file=result.path).predict_proba(paths)
    flipped = graft.load(linear_run, tta="flip").predict_proba(paths)
    plain = graft.load(linear_run).predict_proba(paths)
    gap = np.abs(flipped - plain).max()
    assert np.abs(exported - flipped).max() < gap / 5  # the graph flips: closer to TTA than not


@pytest.mark.slow
def test_a_run_trained_with_flip_predicts_with_it(data: Path, tmp_path: Path) -> None:
    options = NeuralOptions(
        strategy="head", epochs=1, augment="none", tta="flip", workers=0, batch_size=4, **QUICK
    )
    train_neural(data, out=tmp_path / "run", options=options)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tta"] == "flip"
    assert graft.load(tmp_path / "run").tta == "flip"
    assert graft.load(tmp_path / "run", tta="none").tta == "none"
    # its saved validation metrics are the flipped predictions'
    paths = sorted((data / "validation").rglob("*.png"))
    saved = graft.evaluate(tmp_path / "run")
    recomputed = graft.evaluate(tmp_path / "run", tta="flip")
    assert saved["accuracy"] == recomputed["accuracy"] and len(paths) == saved["n"]


def test_an_unknown_tta_is_refused(linear_run: Path) -> None:
    with pytest.raises(ConfigError, match="--tta 'rotate' is not one of: none, flip, dihedral"):
        graft.load(linear_run, tta="rotate")


@pytest.mark.slow
def test_dihedral_averages_the_eight_symmetries(unsure_run: Path, tmp_path: Path) -> None:
    import onnx

    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 96, 3), np.uint8))
    image = tmp_path / "noise.png"
    picture.save(image)
    views = []
    for turns in range(4):
        turned = picture.rotate(90 * turns)  # square image: quarter turns lose nothing
        for mirror in (False, True):
            path = tmp_path / f"view{turns}{int(mirror)}.png"
            (ImageOps.mirror(turned) if mirror else turned).save(path)
            views.append(path)
    plain = graft.load(unsure_run).predict_proba(views)
    assert np.abs(plain - plain[0]).max() > 1e-3  # the eight views are different inputs
    dihedral = graft.load(unsure_run, tta="dihedral").predict_proba([image])[0]
    # PIL turns the file before resizing and graft turns the resized pixels: close, not equal
    expected = plain.mean(axis=0)
    assert np.abs(dihedral - expected).max() < np.abs(plain - expected).max() / 5
    result = export_model(unsure_run, format="onnx", out=tmp_path / "d8.onnx", tta="dihedral")
    assert {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}["tta"] == "dihedral"
    exported = graft.load(unsure_run, backend="onnx", model_file=result.path)
    # the graph averages the same eight views: it matches, and every view gives the same answer
    np.testing.assert_allclose(exported.predict_proba([image])[0], dihedral, atol=1e-4)
    spread = np.abs(exported.predict_proba(views) - dihedral).max()
    assert spread < np.abs(plain - expected).max() / 5


def test_a_linear_probe_with_views_fits_on_every_view_and_predicts_their_average(
    data: Path, tmp_path: Path
) -> None:
    from graft.features.extract import FeatureSpec, extract_features
    from graft.heads import ClassicHead, fit_head
    from graft.runs.files import HEAD

    out = tmp_path / "run"
    result = graft.train(data, strategy="linear", out=out, tta="flip", **QUICK)
    assert json.loads((out / "config.json").read_text())["tta"] == "flip"
    assert graft.load(out).tta == "flip"
    # a view's features are those of the mirrored image (graft mirrors the resized pixels)
    spec = FeatureSpec.create("efficientnet_lite0.in1k")
    paths = _lopsided(tmp_path / "images")
    mirrors = [p.with_name(p.stem + "-mirror.png") for p in paths]
    own = extract_features(paths, spec, engine="torch").features
    mirrored = extract_features(paths, spec.with_view(0, True), engine="torch").features
    of_mirrors = extract_features(mirrors, spec, engine="torch").features
    assert np.abs(mirrored - of_mirrors).max() < np.abs(own - of_mirrors).max() / 10
    assert spec.with_view(0, True).key != spec.key and "view" not in spec.describe()
    # the head is the one fitted on both views of every training image
    train = sorted((data / "train").rglob("*.png"), key=lambda p: (p.parent.name, str(p)))
    labels = [p.parent.name for p in train]
    both = np.concatenate(
        [
            extract_features(train, spec, engine="torch").features,
            extract_features(train, spec.with_view(0, True), engine="torch").features,
        ]
    )
    expected = fit_head("logreg", both, labels * 2, groups=np.tile(np.arange(len(train)), 2))
    saved = ClassicHead.load(out / HEAD)
    assert "an image's views in one fold" in saved.params["selection"]
    assert saved.params["C"] == expected.params["C"]
    np.testing.assert_allclose(saved.arrays["coef"], expected.arrays["coef"], rtol=1e-3, atol=1e-5)
    # its saved metrics are the predictor's: the views' probabilities averaged
    validation = sorted((data / "validation").rglob("*.png"))
    assert result.metrics["val"]["n"] == len(validation)
    again, unflipped = graft.evaluate(out, tta="flip"), graft.evaluate(out, tta="none")
    assert again["log_loss"] == pytest.approx(result.metrics["val"]["log_loss"], rel=1e-3)
    assert abs(unflipped["log_loss"] - again["log_loss"]) > 0.1 * again["log_loss"]
    one = graft.load(out, tta="none").predict_proba(paths)
    other = graft.load(out, tta="none").predict_proba(mirrors)
    np.testing.assert_allclose(graft.load(out).predict_proba(paths), (one + other) / 2, atol=1e-3)


def test_a_neural_run_with_views_starts_from_the_probe_fitted_on_them(
    data: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    from graft.features.extract import FeatureSpec, extract_features
    from graft.heads import fit_head
    from graft.training.probe import probe_layer

    options = NeuralOptions(
        strategy="head",
        epochs=1,
        lr=1e-12,
        safeguard=False,
        augment="none",
        tta="flip",
        workers=0,
        batch_size=4,
        **QUICK,
    )
    train_neural(data, out=tmp_path / "run", options=options)
    spec = FeatureSpec.create("efficientnet_lite0.in1k")
    train = sorted((data / "train").rglob("*.png"), key=lambda p: (p.parent.name, str(p)))
    both = np.concatenate(
        [
            extract_features(train, spec, engine="torch").features,
            extract_features(train, spec.with_view(0, True), engine="torch").features,
        ]
    )
    labels = [p.parent.name for p in train] * 2
    groups = np.tile(np.arange(len(train)), 2)
    weight, _ = probe_layer(fit_head("logreg", both, labels, groups=groups))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "an image's views in one fold" in config["probe"]["selection"]
    state = load_file(str(tmp_path / "run" / "model.safetensors"))
    head = {k: v for k, v in state.items() if k.startswith("head.") and k.endswith("weight")}
    (saved,) = head.values()
    np.testing.assert_allclose(saved, weight.numpy(), rtol=1e-3, atol=1e-5)


def test_a_probe_on_views_refuses_heads_that_would_find_an_image_s_own_views(
    data: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigError, match=r"cannot fit on several views of each image \(--tta flip\)"
    ):
        graft.train(data, strategy="linear", out=tmp_path / "r", tta="flip", head="knn", **QUICK)
    assert not (tmp_path / "r").exists()
