"""Resolving names, listing backbones, and the never-download-unless-asked rule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch

from graft.errors import ConfigError, NetworkError, WeightsError
from graft.zoo import add_weights, create_model, describe, get_backbone, list_backbones
from graft.zoo import sources as sources_module

SEEDS = [
    "vgg16",
    "vgg19",
    "resnet50",
    "inception_v3",
    "legacy_xception",
    "densenet121",
    "nasnetalarge",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_tiny",
]


@pytest.mark.parametrize(
    ("name", "resolved", "kind"),
    [
        ("efficientnet_lite0.in1k", "efficientnet_lite0.in1k", "embedded"),
        ("efficientnet_lite0", "efficientnet_lite0.in1k", "embedded"),
        ("tf_efficientnet_lite1", "efficientnet_lite1.in1k", "embedded"),
        ("squeezenet1_1", "squeezenet1_1.in1k", "embedded"),
        ("mobilenetv2_100", "mobilenetv2_100.in1k_features", "embedded"),
        ("resnet50", "resnet50", "random"),
        ("resnet50.a1_in1k", "resnet50.a1_in1k", "hub"),
    ],
)
def test_names_resolve(name: str, resolved: str, kind: str) -> None:
    record = get_backbone(name)
    assert (record.name, record.weights.kind) == (resolved, kind)


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet5O'; did you mean resnet50"):
        get_backbone("resnet5O")


def test_unknown_tag_is_an_error_not_a_download() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone"):
        get_backbone("resnet50.no_such_tag")


def test_listing_has_the_embedded_backbones_and_the_seed_architectures() -> None:
    listing = {entry["name"]: entry for entry in map(describe, list_backbones())}
    embedded = [e for e in listing.values() if e["source"] == "embedded"]
    assert len(embedded) == 5
    assert all(e["available"] and e["pretrained"] for e in embedded)
    random = [e for e in listing.values() if e["source"] == "random"]
    assert len(random) >= 30
    assert set(SEEDS) <= set(listing)
    for entry in listing.values():
        assert {
            "name",
            "available",
            "source",
            "params",
            "feature_dim",
            "input_size",
            "license",
        } <= set(entry)


def test_random_only_backbone_refuses_pretrained_use() -> None:
    with pytest.raises(WeightsError, match=r"graft weights add FILE --backbone resnet18"):
        create_model("resnet18")


def test_user_weights_take_over_the_bare_name(tmp_path: Path) -> None:
    file = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), file)
    add_weights(file, architecture="resnet18")
    assert get_backbone("resnet18").name == "resnet18.user"
    names = [record.name for record in list_backbones()]
    assert "resnet18.user" in names
    assert "resnet18" not in names


def test_hub_weights_need_allow_download() -> None:
    with pytest.raises(WeightsError, match=r"--allow-download"):
        create_model("resnet18.a1_in1k")


def test_allow_download_fails_fast_without_network() -> None:
    start = time.monotonic()
    with pytest.raises(NetworkError, match=r"cannot reach huggingface\.co:443"):
        create_model("resnet18.a1_in1k", allow_download=True)
    assert time.monotonic() - start < 30  # a refusal, not a hang (the real timeout is 5 s)


def test_downloaded_weights_are_kept_for_offline_use(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_create = timm.create_model

    def fake_hub(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:  # stands in for the download: a randomly initialised network
            calls.append(name)
            return real_create(name.split(".")[0], pretrained=False)
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(sources_module, "ensure_hub_reachable", lambda: None)
    monkeypatch.setattr(timm, "create_model", fake_hub)
    model = create_model("resnet18.a1_in1k", allow_download=True)
    assert calls == ["resnet18.a1_in1k"]
    monkeypatch.setattr(timm, "create_model", real_create)
    assert model.record.weights.kind == "user"
    offline = create_model("resnet18.a1_in1k")  # now served from the store, no download
    assert offline.record.weights.kind == "user"
    for a, b in zip(model.state_dict().values(), offline.state_dict().values(), strict=True):
        assert torch.equal(a, b)
