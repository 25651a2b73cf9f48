"""``graft weights add``: strict checks, safe reading, and the round trip to offline use."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from graft.classification import classify
from graft.errors import ConfigError, WeightsError
from graft.zoo import add_weights, create_model, get_backbone, remove_weights, stored_records


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    return timm.create_model("resnet18").state_dict()


def test_round_trip_then_classify_offline(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor], photos: dict[str, Path]
) -> None:
    file = tmp_path / "weights.pth"
    torch.save(resnet18_state, file)
    record = add_weights(file, architecture="resnet18")
    assert record.name == "resnet18.user"
    assert record.num_classes == 1000 and record.labels == "imagenet-1k"
    model = create_model("resnet18")
    for key, value in resnet18_state.items():
        assert torch.equal(model.net.state_dict()[key], value)
    (result,) = classify([photos["chelsea"]], backbone="resnet18", top_k=2)
    assert result.ok and len(result.predictions) == 2


def test_file_for_another_architecture_is_refused_with_keys(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    file = tmp_path / "weights.pth"
    torch.save(resnet18_state, file)
    with pytest.raises(WeightsError) as caught:
        add_weights(file, architecture="resnet50")
    message = str(caught.value)
    assert "does not fit resnet50" in message
    assert "missing keys (layer1.0.conv3.weight" in message
    assert "shape mismatches" in message
    assert stored_records() == []


def test_unexpected_keys_are_listed(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    file = tmp_path / "weights.pth"
    torch.save({**resnet18_state, "extra.weight": torch.zeros(1)}, file)
    with pytest.raises(WeightsError, match=r"1 unexpected keys \(extra\.weight\)"):
        add_weights(file, architecture="resnet18")


def test_nested_prefixed_checkpoint_with_a_new_head(tmp_path: Path) -> None:
    state = timm.create_model("resnet18", num_classes=3).state_dict()
    file = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, file)
    record = add_weights(file, architecture="resnet18", tag="three", labels=["a", "b", "c"])
    assert (record.name, record.num_classes, record.labels) == (
        "resnet18.three",
        3,
        ("a", "b", "c"),
    )
    assert create_model("resnet18.three").num_classes == 3


def test_safetensors_input(tmp_path: Path, resnet18_state: dict[str, torch.Tensor]) -> None:
    file = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_state.items()}, str(file))
    assert add_weights(file, architecture="resnet18").num_classes == 1000


def test_labels_must_match_the_head(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    file = tmp_path / "weights.pth"
    torch.save(resnet18_state, file)
    with pytest.raises(ConfigError, match=r"2 labels given but the head .* has 1000 outputs"):
        add_weights(file, architecture="resnet18", labels=["a", "b"])


class _Payload:
    """Unpickling this runs code: it creates the folder ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("save", ["pickle", "torch.save"])
def test_pickle_with_code_is_refused_and_never_runs(tmp_path: Path, save: str) -> None:
    marker = tmp_path / "the-payload-ran"
    file = tmp_path / "evil.pth"
    if save == "pickle":
        file.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}))
    else:
        torch.save({"fc.weight": _Payload(marker)}, file)
    with pytest.raises(WeightsError, match=r"not a plain PyTorch state dict"):
        add_weights(file, architecture="resnet18")
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: plain pickle runs it
    assert marker.is_dir()


@pytest.mark.parametrize("content", [b"", b"not weights at all"])
def test_non_weight_file_is_refused(tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "weights.pth"
    file.write_bytes(content)
    with pytest.raises(WeightsError, match=str(file)):
        add_weights(file, architecture="resnet18")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no such weight file"):
        add_weights(tmp_path / "nope.pth", architecture="resnet18")


def test_unknown_architecture(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet_18'"):
        add_weights(tmp_path / "x.pth", architecture="resnet_18")


def test_bad_tag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tag '\.\./x'"):
        add_weights(tmp_path / "x.pth", architecture="resnet18", tag="../x")


def test_tampered_store_file_is_refused(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    file = tmp_path / "weights.pth"
    torch.save(resnet18_state, file)
    record = add_weights(file, architecture="resnet18")
    stored = Path(record.weights.file or "")
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"SHA-256"):
        create_model("resnet18.user")


def test_remove(tmp_path: Path, resnet18_state: dict[str, torch.Tensor]) -> None:
    file = tmp_path / "weights.pth"
    torch.save(resnet18_state, file)
    add_weights(file, architecture="resnet18")
    remove_weights("resnet18.user")
    assert get_backbone("resnet18").weights.kind == "random"
    with pytest.raises(ConfigError, match=r"no stored weights named 'resnet18\.user'"):
        remove_weights("resnet18.user")
