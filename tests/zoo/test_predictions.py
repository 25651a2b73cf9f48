"""Real predictions on real photos: a wrong weight mapping or preprocessing fails here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

from graft.classification import classify
from graft.data import eval_transform, load_image
from graft.zoo import create_model
from graft.zoo.embedded import EMBEDDED

WITH_HEAD = sorted(name for name, record in EMBEDDED.items() if record.has_head)
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "lynx"}
COFFEE = {"espresso", "cup", "coffee mug"}
REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def test_four_embedded_backbones_have_a_head() -> None:
    assert len(WITH_HEAD) == 4


@pytest.mark.parametrize("backbone", WITH_HEAD)
def test_chelsea_is_a_cat_in_the_top_3(photos: dict[str, Path], backbone: str) -> None:
    (result,) = classify([photos["chelsea"]], backbone=backbone, top_k=3)
    assert {p.label for p in result.predictions} & CATS, result.predictions


@pytest.mark.parametrize("backbone", WITH_HEAD)
def test_coffee_is_coffee_in_the_top_3(photos: dict[str, Path], backbone: str) -> None:
    (result,) = classify([photos["coffee"]], backbone=backbone, top_k=3)
    assert {p.label for p in result.predictions} & COFFEE, result.predictions


def test_lite0_logits_match_the_stored_reference(photos: dict[str, Path]) -> None:
    model = create_model("efficientnet_lite0.in1k")
    pixels = eval_transform(model.record.preprocessing)(load_image(photos["chelsea"]))
    with torch.no_grad():
        logits = model(pixels[None])[0].numpy()
    reference = np.load(REFERENCE / "chelsea_efficientnet_lite0_in1k_logits.npy")
    assert np.abs(logits - reference).max() <= 1e-3


@pytest.mark.parametrize("name", ["efficientnet_lite0.in1k", "efficientnet_lite2.in1k"])
def test_built_in_normalisation_equals_timms_own_pipeline(
    photos: dict[str, Path], name: str
) -> None:
    """uint8 pixels through the model's Normalize == timm's float transform into the bare net.

    The geometry is timm's own here (graft's faster crop-box resize differs by rounding and is
    tested in tests/data/test_transforms.py): this test is about the arithmetic.
    """
    from graft.data.transforms import _timm_transform

    model = create_model(name)
    image = load_image(photos["coffee"])
    timm_cfg = resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(model.record.architecture).to_dict()
    )
    assert timm_cfg["mean"] == model.record.preprocessing.mean
    timm_input = create_transform(**timm_cfg)(image)
    with torch.no_grad():
        expected = model.net(timm_input[None])
        ours = model(_timm_transform(model.record.preprocessing)(image)[None])
    assert torch.allclose(ours, expected, atol=1e-3)
