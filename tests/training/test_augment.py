"""Augmentation presets, custom configs, and the Keras-style nearest fill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from graft.errors import ConfigError
from graft.training.augment import PRESETS, preset, train_transform
from graft.zoo import get_backbone

PRE = get_backbone("efficientnet_lite0.in1k").preprocessing


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_gives_uint8_pixels_of_the_input_size(name: str) -> None:
    torch.manual_seed(0)
    out = train_transform(PRE, preset(name))(Image.new("RGB", (320, 240), (120, 60, 30)))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 224, 224)


def test_none_is_the_evaluation_transform() -> None:
    from graft.data.transforms import eval_transform

    image = Image.effect_noise((300, 200), 40).convert("RGB")
    assert torch.equal(train_transform(PRE, preset("none"))(image), eval_transform(PRE)(image))


def test_standard_matches_the_seeds_settings() -> None:
    standard = preset("standard")
    assert (standard.rotation, standard.shift, standard.zoom, standard.shear, standard.hflip) == (
        50,
        0.2,
        0.3,
        0.2,
        0.5,
    )
    assert standard.fill == "nearest"


def test_nearest_fill_leaves_no_black_corners() -> None:
    torch.manual_seed(3)
    image = Image.new("RGB", (224, 224), (200, 200, 200))
    config = preset("standard")
    for _ in range(5):
        pixels = train_transform(PRE, config)(image).numpy()
        assert pixels.min() > 150  # a constant fill would leave black (0) corners


def test_custom_config_file(tmp_path: Path) -> None:
    path = tmp_path / "aug.json"
    path.write_text(json.dumps({"hflip": 1.0, "resized_crop_scale": [0.9, 1.0]}))
    config = preset(str(path))
    assert config.name == "custom" and config.resized_crop_scale == (0.9, 1.0)
    image = Image.fromarray(np.tile(np.arange(224, dtype=np.uint8), (224, 1))).convert("RGB")
    flipped = train_transform(PRE, config)(image).numpy()
    assert flipped[0, 112, 10] > flipped[0, 112, 200]  # the ramp now runs right to left


def test_unknown_presets_and_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        preset("medium")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flip": 0.5}))
    with pytest.raises(ConfigError, match=r"unknown augmentation settings \['flip'\]"):
        preset(str(bad))


def test_the_dihedral_preset_only_flips_and_turns() -> None:
    from PIL import Image

    from graft.training.augment import preset, train_transform
    from graft.zoo import get_backbone

    preprocessing = get_backbone("efficientnet_lite0.in1k").preprocessing
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
    transform = train_transform(preprocessing, preset("dihedral"))
    base = train_transform(preprocessing, preset("none"))(picture).numpy()  # resize, crop
    symmetries = [
        np.rot90(view, turns, axes=(1, 2)) for view in (base, base[..., ::-1]) for turns in range(4)
    ]
    seen = set()
    torch.manual_seed(0)
    for _ in range(64):
        out = transform(picture).numpy()
        matches = [i for i, s in enumerate(symmetries) if np.array_equal(out, s)]
        assert matches, "not a lossless flip or quarter turn of the input"
        seen.add(matches[0])
    assert len(seen) == 8  # every symmetry is drawn
