"""Every engine computes the same features; int8 and bf16 are guarded against accuracy loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graft.data.loading import decode_pixels
from graft.engines import available_engines, create_engine, resolve_engine
from graft.errors import ConfigError
from graft.features.cache import FeatureCache, default_cache_path
from graft.features.extract import FeatureSpec, feature_engine
from graft.features.layers import feature_module
from graft.features.precision import PrecisionCheck, check_precision, enforce
from graft.training.linear import LinearOptions, train_linear
from graft.zoo.model import create_model
from synthetic import write_class_folders

LITE0 = "efficientnet_lite0.in1k"


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def pixels(photos: dict[str, Path]) -> np.ndarray:
    spec = FeatureSpec.create(LITE0)
    return decode_pixels(list(photos.values()), spec.preprocessing)


@pytest.fixture(scope="module")
def reference(pixels: np.ndarray) -> np.ndarray:
    return feature_engine(FeatureSpec.create(LITE0), engine="torch")(pixels)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_fp32_engines_agree_with_pytorch(
    engine: str, pixels: np.ndarray, reference: np.ndarray
) -> None:
    runner = feature_engine(FeatureSpec.create(LITE0), engine=engine)
    assert runner.name == engine
    assert _cosine(runner(pixels), reference).min() >= 0.9999
    again = feature_engine(FeatureSpec.create(LITE0), engine=engine)  # from the on-disk cache
    assert _cosine(again(pixels), reference).min() >= 0.9999


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_stays_close_to_fp32(engine: str, pixels: np.ndarray, reference: np.ndarray) -> None:
    try:
        runner = feature_engine(FeatureSpec.create(LITE0, precision="bf16"), engine=engine)
    except ConfigError as err:
        pytest.skip(str(err))  # a CPU without bf16 units
    assert _cosine(runner(pixels), reference).min() >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_int8_is_calibrated_once_then_cached(
    engine: str, pixels: np.ndarray, reference: np.ndarray
) -> None:
    network = feature_module(create_model(LITE0))
    calls = []

    def calibration() -> np.ndarray:
        calls.append(1)
        return pixels

    key = f"test-int8-{engine}"
    runner = create_engine(
        network,
        input_size=224,
        engine=engine,
        precision="int8",
        cache_key=key,
        calibration=calibration,
    )
    features = runner(pixels)
    assert features.shape == reference.shape
    assert _cosine(features, reference).mean() >= 0.8  # four calibration images only
    cached = create_engine(network, input_size=224, engine=engine, precision="int8", cache_key=key)
    np.testing.assert_allclose(cached(pixels), features, rtol=1e-4, atol=1e-4)
    assert calls == [1]


@pytest.mark.slow
def test_bad_engine_and_precision_choices_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"int8 runs on onnxruntime or openvino, not torch"):
        resolve_engine("torch", precision="int8")
    with pytest.raises(ConfigError, match=r"bf16 runs on torch or openvino, not onnxruntime"):
        resolve_engine("onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match=r"engine 'tensorrt' is not one of"):
        resolve_engine("tensorrt")
    with pytest.raises(ConfigError, match=r"precision 'fp8' is not one of"):
        FeatureSpec.create(LITE0, precision="fp8")
    with pytest.raises(ConfigError, match=r"needs calibration images"):
        create_engine(
            feature_module(create_model(LITE0)),
            input_size=224,
            engine="openvino",
            precision="int8",
        )
    assert resolve_engine("auto", precision="int8") == available_engines()[0]


def test_precision_and_calibration_are_part_of_the_feature_key(photos: dict[str, Path]) -> None:
    fp32 = FeatureSpec.create(LITE0)
    int8 = FeatureSpec.create(LITE0, precision="int8")
    files = list(photos.values())
    a = int8.calibrated(files[:2], ["h1", "h2"])
    b = int8.calibrated(files[:2], ["h1", "h3"])
    assert len({fp32.key, a.key, b.key, FeatureSpec.create(LITE0, precision="bf16").key}) == 4
    assert a.describe()["precision"] == "int8" and a.describe()["calibration"]
    assert fp32.calibrated(files, ["h"]) is fp32


def test_the_precision_check_never_scores_on_the_test_split() -> None:
    from graft.features.precision import _sample

    labels = ["a", "b"] * 60
    # no validation split: a third of train scores, never the test images
    splits: list[str | None] = ["train"] * 60 + ["test"] * 60
    fit, score = _sample(splits, labels, 200)
    assert {splits[i] for i in fit + score} == {"train"}
    assert not set(fit) & set(score) and len(score) == 20
    # a validation split scores
    with_val: list[str | None] = ["train"] * 60 + ["val"] * 30 + ["test"] * 30
    fit, score = _sample(with_val, labels, 200)
    assert {with_val[i] for i in fit} == {"train"} and {with_val[i] for i in score} == {"val"}
    # the same images listed in another order draw the same sample (by content hash)
    keys = [f"hash{i:03d}" for i in range(120)]
    fit, score = _sample(splits, labels, 30, keys)
    turn = np.random.default_rng(1).permutation(120)
    fit2, score2 = _sample(
        [splits[i] for i in turn], [labels[i] for i in turn], 30, [keys[i] for i in turn]
    )
    assert {keys[turn[i]] for i in fit2} == {keys[i] for i in fit}
    assert {keys[turn[i]] for i in score2} == {keys[i] for i in score}


def test_a_check_on_a_handful_of_held_out_images_is_refused() -> None:
    # a 5-shot training split and a test split: 7 images would score; auto keeps fp32 then
    spec = FeatureSpec.create("efficientnet_lite0.in1k", precision="bf16")
    labels = ["a", "b"] * 10 + ["a"] * 100
    splits: list[str | None] = ["train"] * 20 + ["test"] * 100
    paths = [Path(f"{i}.png") for i in range(120)]
    with pytest.raises(ConfigError, match="7 held-out images, fewer than the 50 it needs"):
        check_precision(paths, labels, splits, [None] * 120, spec, min_held=50)


def test_the_check_scores_one_fp32_probe_on_both_features_of_the_same_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The injected fault: a "precision" whose features carry the same information in other
    # dimensions. A probe fitted on them scores as well as the fp32 one, so a check that
    # fitted one probe per precision would pass it; the probe fitted on fp32 features, scored
    # on the same images' reduced features, sees its predictions change.
    import graft.features.precision as precision
    from graft.features.extract import ExtractionResult

    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 90
    centres = {"a": rng.normal(0, 1, 32), "b": rng.normal(0, 1, 32)}
    fp32 = np.stack([centres[label] + rng.normal(0, 0.8, 32) for label in labels])
    paths = [Path(f"{i}.png") for i in range(len(labels))]
    position = {p: i for i, p in enumerate(paths)}
    fault = {"reduced": lambda rows: rows[:, ::-1]}  # the same numbers, in other dimensions

    def features(chosen: list[Path], spec: FeatureSpec, **kwargs: object) -> ExtractionResult:
        rows = fp32[[position[p] for p in chosen]]
        if spec.precision != "fp32":
            rows = fault["reduced"](rows)
        return ExtractionResult(rows.astype(np.float32), np.ones(len(rows), bool), [], 0, 0)

    monkeypatch.setattr(precision, "extract_features", features)
    splits: list[str | None] = ["train"] * 120 + ["val"] * 60
    hashes: list[str | None] = [f"h{i}" for i in range(180)]
    spec = FeatureSpec.create(LITE0, precision="bf16")
    moved = check_precision(paths, labels, splits, hashes, spec)
    assert moved.accuracy_fp32 > 0.9 and moved.drop > 20
    assert moved.agreement is not None and moved.agreement < 0.8
    with pytest.raises(ConfigError, match="exceeds the tolerance"):
        enforce(moved)
    # features within rounding of the fp32 ones: the same predictions, no drop
    fault["reduced"] = lambda rows: rows + rng.normal(0, 1e-6, rows.shape)
    same = check_precision(paths, labels, splits, hashes, spec)
    assert same.agreement == 1.0 and same.drop == 0.0
    assert "same prediction on 100.0%" in same.summary()
    # held-out images that all fail to decode: no figure at all, said so (not a silent pass)
    held = set(paths[120:])

    def unreadable(chosen: list[Path], spec: FeatureSpec, **kwargs: object) -> ExtractionResult:
        rows = fp32[[position[p] for p in chosen]].astype(np.float32)
        return ExtractionResult(rows, np.array([p not in held for p in chosen]), [], 0, 0)

    monkeypatch.setattr(precision, "extract_features", unreadable)
    with pytest.raises(ConfigError, match=r"readable held-out ones \(\d+ and 0 of the sample"):
        check_precision(paths, labels, splits, hashes, spec)


def test_enforce_refuses_a_large_drop_unless_forced() -> None:
    check = PrecisionCheck("int8", 0.95, 0.7, 0.99, 0.95, 200)
    with pytest.raises(ConfigError, match=r"a drop of 4.00 points exceeds the tolerance of 1"):
        enforce(check)
    enforce(check, force=True)
    enforce(check, tolerance=5.0)


@pytest.mark.slow
def test_int8_linear_run_is_checked_recorded_and_predicts(
    split_folders: Path, tmp_path: Path
) -> None:
    options = LinearOptions(engine="openvino", precision="int8")
    with pytest.raises(ConfigError, match=r"int8 vs fp32 on 8 held-out images"):
        train_linear(
            split_folders,
            out=tmp_path / "refused",
            options=LinearOptions(engine="openvino", precision="int8", precision_tolerance=-101),
        )
    assert not (tmp_path / "refused").exists()
    result = train_linear(split_folders, out=tmp_path / "run", options=options)
    check = result.extraction["precision_checks"][0]
    assert check["precision"] == "int8" and check["images"] == 8
    assert check["drop_points"] <= 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    entry = config["features"][0]
    assert entry["precision"] == "int8" and entry["calibration"]
    assert len(entry["calibration_files"]) == 20  # every training image (fewer than 300)

    from graft.config import cache_dir
    from graft.predictor import load

    images = sorted((split_folders / "validation").rglob("*.png"))
    before = load(tmp_path / "run").predict(images)
    for compiled in (cache_dir() / "engines").rglob("*"):  # the cache was cleared:
        compiled.unlink() if compiled.is_file() else None
    after = load(tmp_path / "run").predict(images)  # rebuilt from the recorded calibration
    assert [p.label for p in before] == [p.label for p in after]


def _choice(result: object) -> dict:
    return result.extraction["precision"][0]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_auto_is_fp32_without_bf16_units_or_a_calibrated_int8(
    split_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graft.features.precision as precision

    monkeypatch.setattr(precision, "AUTO_MIN_IMAGES", 0)
    monkeypatch.setattr(precision, "AUTO_MIN_HELD", 0)
    monkeypatch.setattr(precision, "bf16_native", lambda engine="auto", device=None: False)
    result = train_linear(split_folders, out=tmp_path / "run", options=LinearOptions())
    choice = _choice(result)
    assert choice["requested"] == "auto" and choice["precision"] == "fp32"
    assert "no native bf16" in choice["reason"] and choice["checks"] == []
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["features"][0]["precision"] == "fp32"
    assert config["extraction"]["precision"][0]["precision"] == "fp32"


@pytest.mark.slow
def test_auto_takes_bf16_where_native_after_the_check(
    split_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graft.features.precision as precision

    if not precision.bf16_native("openvino"):
        pytest.skip("this CPU computes no bf16 natively")
    monkeypatch.setattr(precision, "AUTO_MIN_IMAGES", 0)
    monkeypatch.setattr(precision, "AUTO_MIN_HELD", 0)
    result = train_linear(
        split_folders, out=tmp_path / "run", options=LinearOptions(engine="openvino")
    )
    choice = _choice(result)
    assert choice["precision"] == "bf16" and choice["reason"].startswith("passed the check")
    assert [c["precision"] for c in choice["checks"]] == ["bf16"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["features"][0]["precision"] == "bf16"
    # The run moved to a machine without bf16 units predicts from fp32 features, the same.
    import graft.engines.base as base
    from graft.predictor import load

    images = sorted((split_folders / "validation").rglob("*.png"))
    here = [p.label for p in load(tmp_path / "run").predict(images)]
    native = base.bf16_native
    monkeypatch.setattr(base, "bf16_native", lambda engine="auto", device=None: False)
    moved = load(tmp_path / "run")
    assert [p.label for p in moved.predict(images)] == here
    assert [engine.precision for engine in moved._engines] == ["fp32"]  # type: ignore[attr-defined]
    monkeypatch.setattr(base, "bf16_native", native)
    # New images, too few to repay the check: fp32, and no check run.
    other = tmp_path / "other"
    write_class_folders(other / "train", 10, start=300)
    write_class_folders(other / "validation", 4, start=400)
    monkeypatch.setattr(precision, "AUTO_MIN_IMAGES", 1000)
    small = _choice(train_linear(other, out=tmp_path / "small", options=LinearOptions()))
    assert small["precision"] == "fp32" and "too few" in small["reason"]
    assert small["checks"] == []


def _stripes(root: Path, per_class: int, start: int) -> None:
    """Horizontal vs vertical stripes of one grey: fp32 features tell them apart."""
    from PIL import Image

    for label in ("horizontal", "vertical"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            rng = np.random.default_rng(i)
            period = int(rng.integers(6, 14))
            wave = (np.arange(64) // (period // 2) % 2) * 60 + 100
            grid = np.tile(wave, (64, 1)) if label == "vertical" else np.tile(wave[:, None], 64)
            pixels = grid[..., None] + rng.integers(-30, 30, (64, 64, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                root / label / f"{i}.png"
            )


@pytest.mark.slow
def test_auto_refuses_a_badly_calibrated_int8_and_falls_back_to_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split_folders = tmp_path / "data"
    _stripes(split_folders / "train", 12, 0)
    _stripes(split_folders / "validation", 30, 100)
    import graft.engines.openvino_engine as openvino_engine
    import graft.features.precision as precision

    # The injected fault: int8 calibrated on blank grey images, whose activation ranges fit
    # none of the real images (cosine to fp32 about 0.1).
    def grey(calibration: object, name: str) -> np.ndarray:
        return np.full((8, 3, 224, 224), 128, dtype=np.uint8)

    monkeypatch.setattr(openvino_engine, "need_calibration", grey)
    forced = LinearOptions(engine="openvino", precision="int8", force_precision=True)
    bad = train_linear(split_folders, out=tmp_path / "int8", options=forced)
    assert bad.extraction["precision_checks"][0]["drop_points"] > 1.0  # the guard sees it
    with FeatureCache(default_cache_path()) as cache:  # features go, the int8 model stays
        cache.clear()
    monkeypatch.setattr(precision, "AUTO_MIN_IMAGES", 0)
    monkeypatch.setattr(precision, "AUTO_MIN_HELD", 0)
    monkeypatch.setattr(precision, "bf16_native", lambda engine="auto", device=None: False)
    result = train_linear(
        split_folders, out=tmp_path / "auto", options=LinearOptions(engine="openvino")
    )
    choice = _choice(result)
    assert choice["precision"] == "fp32" and choice["reason"].startswith("refused int8")
    assert [c["precision"] for c in choice["checks"]] == ["int8"]
    assert choice["checks"][0]["drop_points"] > 1.0
    assert result.metrics["val"]["accuracy"] == 1.0
