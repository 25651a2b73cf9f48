"""Feature extraction: the cache, its invalidation, layers, engines, and killed runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from graft.data.files import walk_folder
from graft.errors import ConfigError
from graft.features import FeatureCache, FeatureSpec, extract_features, list_layers
from graft.features import extract as extract_module
from graft.features.cache import default_cache_path
from graft.zoo import get_backbone
from synthetic import write_class_folders

LITE0 = "efficientnet_lite0.in1k"


def _files(root: Path) -> list[Path]:
    return [p for p in walk_folder(root) if p.suffix == ".png"]


def test_second_run_does_no_forward_pass(
    class_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = FeatureSpec.create(LITE0)
    files = _files(class_folders)
    first = extract_features(files, spec, engine="torch")
    assert (first.computed, first.cached) == (24, 0)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the backbone ran although every feature was cached")

    monkeypatch.setattr(extract_module, "_compute", no_model)
    second = extract_features(files, spec, engine="torch")
    assert (second.computed, second.cached) == (0, 24)
    np.testing.assert_array_equal(first.features, second.features)


def test_changing_one_image_recomputes_only_that_image(class_folders: Path) -> None:
    spec = FeatureSpec.create(LITE0)
    files = _files(class_folders)
    extract_features(files, spec, engine="torch")
    time.sleep(0.01)
    write_class_folders(class_folders, 1, classes=("blue",), start=7)  # rewrite blue_007.png...
    (class_folders / "blue" / "blue_007.png").write_bytes(
        (class_folders / "red" / "red_000.png").read_bytes()
    )
    again = extract_features(files, spec, engine="torch")
    assert (again.computed, again.cached) == (0, 24)  # its new content is red_000's: cached
    from synthetic import tinted_image

    tinted_image((1, 2, 3), seed=9).save(class_folders / "blue" / "blue_007.png")
    changed = extract_features(files, spec, engine="torch")
    assert (changed.computed, changed.cached) == (1, 23)


def test_spec_changes_are_separate_cache_entries(class_folders: Path) -> None:
    files = _files(class_folders)[:4]
    keys = {
        FeatureSpec.create(LITE0).key,
        FeatureSpec.create(LITE0, pool="max").key,
        FeatureSpec.create(LITE0, layer="stage3").key,
        FeatureSpec.create(LITE0, image_size=160).key,
        FeatureSpec.create(LITE0, crop_pct=1.0).key,
        FeatureSpec.create("squeezenet1_1.in1k").key,
    }
    assert len(keys) == 6
    small = extract_features(files, FeatureSpec.create(LITE0, image_size=160), engine="torch")
    assert small.features.shape == (4, 1280) and small.computed == 4


@pytest.mark.parametrize(
    ("layer", "pool", "dim"),
    [("stage2", "avg", 24), ("stage5", "max", 320), ("final", "max", 1280)],
)
def test_layers_and_pooling(class_folders: Path, layer: str, pool: str, dim: int) -> None:
    result = extract_features(
        _files(class_folders)[:3], FeatureSpec.create(LITE0, layer=layer, pool=pool), engine="torch"
    )
    assert result.features.shape == (3, dim)
    assert np.isfinite(result.features).all()


def test_squeezenet_stages() -> None:
    assert [
        (layer.name, layer.channels) for layer in list_layers(get_backbone("squeezenet1_1.in1k"))
    ] == [
        ("stage1", 64),
        ("stage2", 128),
        ("stage3", 256),
        ("stage4", 512),
        ("final", 512),
    ]


def test_bad_options_are_refused() -> None:
    from graft.features.layers import resolve_layer

    with pytest.raises(ConfigError, match=r"layer 'stage9' is not a layer of .*: stage1"):
        resolve_layer(get_backbone(LITE0), "stage9")
    with pytest.raises(ConfigError, match=r"pooling 'median'"):
        FeatureSpec.create(LITE0, pool="median")
    with pytest.raises(ConfigError, match=r"random weights only"):
        FeatureSpec.create("resnet18")
    with pytest.raises(ConfigError, match=r"--image-size 8 is outside 32..1024"):
        FeatureSpec.create(LITE0, image_size=8)
    for crop in (0.1, 1.5):
        with pytest.raises(ConfigError, match=rf"--crop-pct {crop} must be in \[0.25, 1\]"):
            FeatureSpec.create(LITE0, crop_pct=crop)


def test_a_whole_image_crop_sees_the_border(tmp_path: Path) -> None:
    # a mark in the outer 4 % of the image: the default centre crop (0.875) cuts it away, so
    # the features do not move; --crop-pct 1.0 keeps it, so they do
    from PIL import Image

    plain = Image.new("RGB", (200, 200), (120, 120, 120))
    marked = plain.copy()
    marked.paste((255, 0, 0), (0, 0, 200, 8))
    plain.save(tmp_path / "plain.png")
    marked.save(tmp_path / "marked.png")
    files = [tmp_path / "plain.png", tmp_path / "marked.png"]
    cropped = extract_features(files, FeatureSpec.create(LITE0), engine="torch").features
    whole = extract_features(files, FeatureSpec.create(LITE0, crop_pct=1.0), engine="torch")
    assert np.allclose(cropped[0], cropped[1], atol=1e-5)
    assert np.abs(whole.features[0] - whole.features[1]).max() > 1e-2


@pytest.mark.slow
def test_openvino_features_match_torch(class_folders: Path) -> None:
    files = _files(class_folders)[:6]
    spec = FeatureSpec.create(LITE0)
    cache_a = FeatureCache(default_cache_path().with_name("a.sqlite"))
    cache_b = FeatureCache(default_cache_path().with_name("b.sqlite"))
    torch_features = extract_features(files, spec, engine="torch", cache=cache_a).features
    ov = extract_features(files, spec, engine="openvino", cache=cache_b)
    assert ov.engine == "openvino"
    cosine = (
        (torch_features * ov.features).sum(1)
        / np.linalg.norm(torch_features, axis=1)
        / np.linalg.norm(ov.features, axis=1)
    )
    assert cosine.min() >= 0.9999


def test_unreadable_images_are_reported_and_the_rest_extracted(class_folders: Path) -> None:
    files = _files(class_folders)[:5]
    broken = class_folders / "red" / "broken.png"
    broken.write_bytes(files[0].read_bytes()[:60])
    result = extract_features([*files, broken], FeatureSpec.create(LITE0), engine="torch")
    assert result.ok.tolist() == [True] * 5 + [False]
    assert [p.name for p, _ in result.failures] == ["broken.png"]
    assert np.isnan(result.features[5]).all()


def test_concurrent_writers_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    database = tmp_path / "features.sqlite"
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from pathlib import Path
        from graft.features.cache import FeatureCache
        cache = FeatureCache(Path({str(database)!r}))
        worker = sys.argv[1]
        for batch in range(40):
            vector = np.full(64, batch, np.float32)
            rows = {{f"{{worker}}-{{batch}}-{{i}}": vector for i in range(20)}}
            cache.put("key", rows)
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(3)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM features").fetchone() == (3 * 40 * 20,)


@pytest.mark.slow
def test_killed_extraction_resumes_from_the_cache(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "many", 40)
    files = _files(root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from graft.features import FeatureSpec, extract_features
        files = sorted(Path({str(root)!r}).rglob("*.png"))
        def progress(done, total):
            print("done", done, flush=True)
        spec = FeatureSpec.create({LITE0!r})
        extract_features(files, spec, engine="torch", batch_size=4, progress=progress)
        print("finished", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("done") and int(line.split()[1]) >= 16:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(default_cache_path()) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    resumed = extract_features(sorted(files), FeatureSpec.create(LITE0), engine="torch")
    assert 16 <= resumed.cached < len(files)
    assert resumed.computed == len(files) - resumed.cached
    fresh = extract_features(
        sorted(files),
        FeatureSpec.create(LITE0),
        engine="torch",
        cache=FeatureCache(tmp_path / "fresh.sqlite"),
    )
    np.testing.assert_allclose(resumed.features, fresh.features, atol=1e-5)
