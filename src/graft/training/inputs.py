"""What each phase trains on: cached features, a cached boundary, frozen parts on the inference
engine, or the full network on decoded pixels (the paths of :mod:`graft.training.pipelines`).

:class:`PhaseInputs` picks the fastest path that gives the same result for a phase (which
stages are frozen, whether images are augmented, the device) and builds its batches.

Example:
    >>> from graft.training.pipelines import tensor_batches
    >>> callable(PhaseInputs.epoch_data)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from graft.data.dataset import Sample
from graft.data.transforms import eval_transform, resize_target
from graft.data.validate import DataReport
from graft.errors import DataError
from graft.features.extract import ExtractionResult, FeatureSpec, extract_features
from graft.features.layers import feature_module
from graft.features.precision import select_precision
from graft.models.transfer import TransferModel
from graft.training.augment import AugmentConfig, train_transform
from graft.training.distributed import Distributed
from graft.training.loop import EpochData, Phase
from graft.training.options import NeuralOptions
from graft.training.pipelines import (
    ImageDataset,
    NormalizedLower,
    epoch_order,
    frozen_runner,
    mixed,
    pixel_batches,
    precompute,
    tensor_batches,
)
from graft.training.stages import Stage, split_network
from graft.zoo.records import Preprocessing


class PhaseInputs:
    """Builds each phase's training and validation batches for one run.

    Args:
        model: The network being trained.
        stages: Its backbone's stages, top last.
        options: The run's options.
        preprocessing: The input preprocessing (``--image-size`` applied).
        augment: The augmentation.
        report: The data (splits and content hashes).
        classes: Class names, in target order.
        context: The distributed context.
        device: Where the model trains.
        mixer: Mixup/cutmix for training batches, or ``None``.
        frozen_precision: The frozen parts' precision chosen earlier (on resume), or ``None``.
    """

    def __init__(
        self,
        *,
        model: TransferModel,
        stages: list[Stage],
        options: NeuralOptions,
        preprocessing: Preprocessing,
        augment: AugmentConfig,
        report: DataReport,
        classes: list[str],
        seed: int,
        context: Distributed,
        device: torch.device,
        mixer: Any,
        frozen_precision: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.stages = stages
        self.options = options
        self.preprocessing = preprocessing
        self.augment = augment
        self.report = report
        self.classes = classes
        self.seed = seed
        self.context = context
        self.device = device
        self.mixer = mixer
        self.local_batch = context.local_batch(options.batch_size)
        self.samples = {split: report.images.split(split) for split in ("train", "val", "test")}
        self.targets = {
            split: [classes.index(s.label) for s in samples]
            for split, samples in self.samples.items()
        }
        #: The frozen parts' precision and how it was chosen (``config.json``'s
        #: ``frozen_precision``), once chosen.
        self.frozen_precision = frozen_precision

    def _sample_weights(self) -> np.ndarray | None:
        if self.options.sampler != "balanced":
            return None
        targets = np.array(self.targets["train"])
        counts = np.bincount(targets, minlength=len(self.classes))
        return 1.0 / counts[targets]

    def epoch_data(self, phase: Phase) -> EpochData:
        """Choose the phase's pipeline (see :mod:`graft.training.pipelines`) and build it."""
        options = self.options
        train_samples, val_samples = self.samples["train"], self.samples["val"]
        steps = max(1, -(-len(train_samples) // options.batch_size))
        augmented = not self.augment.is_identity
        weights = self._sample_weights()
        train_targets = torch.tensor(self.targets["train"])
        fast = options.fast_paths and options.bn != "train" and self.device.type == "cpu"
        split = (
            split_network(self.model.backbone.net, self.stages, phase.top) if phase.top else None
        )

        def order(epoch: int) -> list[int]:
            everyone = epoch_order(len(train_samples), seed=self.seed, epoch=epoch, weights=weights)
            return self.context.shard(everyone, batch_size=options.batch_size)

        def batches_of(inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[int], Any]:
            return lambda epoch: tensor_batches(inputs, targets, order(epoch), self.local_batch)

        if fast and phase.top == 0 and not augmented:
            phase.path = "cached-features"
            val_x = self.cached_features(val_samples)
            return EpochData(
                train=batches_of(present(self.cached_features(train_samples)), train_targets),
                val=self.val_batches(val_x),
                trainable=self.model.head,
                steps_per_epoch=steps,
            )
        if fast and (phase.top == 0 or split is not None):
            runner, trainable = self._frozen_part(phase, split)
            val_x = self._precompute(runner, val_samples)
            if not augmented:
                phase.path = "cached-boundary"
                train_x = present(self._precompute(runner, train_samples))
                return EpochData(
                    batches_of(train_x, train_targets), self.val_batches(val_x), trainable, steps
                )
            phase.path = "frozen-engine" if phase.top == 0 else "frozen-lower"
            dataset = self._dataset(train_samples, train=True)

            def through_frozen(epoch: int) -> Any:
                for pixels, target in self._train_pixels(dataset, order(epoch), epoch):
                    yield runner(pixels), target

            return EpochData(through_frozen, self.val_batches(val_x), trainable, steps)
        phase.path = "full"
        train_set = self._dataset(train_samples, train=True)
        val_set = self._dataset(val_samples, train=False)
        val = (lambda: self._pixels(val_set, list(range(len(val_set))), 0)) if val_samples else None
        return EpochData(
            lambda epoch: self._train_pixels(train_set, order(epoch), epoch), val, self.model, steps
        )

    def _frozen_part(
        self, phase: Phase, split: tuple[nn.Module, nn.Module] | None
    ) -> tuple[Any, nn.Module]:
        """The frozen part on the inference engine, and the trainable module above it."""

        spec = self._feature_spec()
        key = spec.model_key
        if phase.top == 0 or split is None:
            frozen: nn.Module = feature_module(self.model.backbone)
            trainable: nn.Module = self.model.head
        else:
            lower, upper = split
            frozen = NormalizedLower(self.model.backbone.normalize, lower)
            key = f"{key}-below{len(self.stages) - phase.top}"
            trainable = nn.Sequential(upper, self.model.head)
        runner = frozen_runner(
            frozen,
            input_size=self.preprocessing.input_size,
            engine=self.options.engine,
            cache_key=key,
            precision=spec.precision,
        )
        return runner, trainable

    def val_batches(self, val_x: torch.Tensor | None) -> Callable[[], Any] | None:
        if val_x is None:
            return None
        targets = torch.tensor(self.targets["val"])
        every = list(range(len(val_x)))
        return lambda: tensor_batches(val_x, targets, every, self.options.batch_size)

    def _train_pixels(self, dataset: ImageDataset, order: list[int], epoch: int) -> Any:
        """Augmented (and, with mixup/cutmix, mixed) training pixels: this process's share."""
        return mixed(self._pixels(dataset, order, epoch, self.local_batch), self.mixer)

    def _pixels(
        self, dataset: ImageDataset, order: list[int], epoch: int, batch_size: int | None = None
    ) -> Any:
        return pixel_batches(
            dataset,
            order,
            batch_size=batch_size or self.options.batch_size,
            workers=self._workers(),
            seed=self.seed + 7919 * self.context.rank,
            epoch=epoch,
        )

    def _workers(self) -> int:
        import os

        if self.options.workers is not None:
            return self.options.workers
        return max(0, min(4, os.cpu_count() or 1))

    def _dataset(self, samples: list[Sample], *, train: bool) -> ImageDataset:

        transform = (
            train_transform(self.preprocessing, self.augment)
            if train
            else eval_transform(self.preprocessing)
        )
        return ImageDataset(
            [s.path for s in samples],
            [self.classes.index(s.label) for s in samples],
            transform,
            resize_target(self.preprocessing),
        )

    def _feature_spec(self) -> Any:
        """The frozen backbone's features, at the precision :meth:`_frozen_precision` chose."""

        spec = FeatureSpec(self.model.record, self.preprocessing, "final", "avg")
        return spec.with_precision(self._frozen_precision(spec))

    def _frozen_precision(self, spec: Any) -> str:
        """The frozen parts' precision: ``--precision auto`` takes bf16 where the engine runs it
        natively and the probe guard passes on this data (int8 is not tried: the frozen lower
        stages would need their own calibration); chosen once per run, kept on resume."""

        if self.frozen_precision:
            return str(self.frozen_precision["precision"])
        requested = "fp32" if self.options.precision == "fp32" else self.options.precision
        # the images and splits the linear strategy sees on the same data (a carved validation
        # split is train to it, or not there at all beyond a cap): both runs then make the same
        # choice, and the probe the safeguard compares with is the linear strategy's
        paths, labels, splits, hashes = self.report.uncarved()
        with self.context.main_first():  # rank 0 fills the cache, the others read the same
            _, choice = select_precision(
                spec,
                requested,
                paths,
                labels,
                splits,
                hashes,
                engine=self.options.engine,
                int8=False,
            )
        self.frozen_precision = choice.to_dict()
        return choice.precision

    def cached_features(
        self, samples: list[Sample], view: tuple[int, bool] = (0, False), *, alone: bool = False
    ) -> torch.Tensor | None:
        """The frozen backbone's features of these images (of one view of each: see
        :func:`graft.tta.views`), through the feature cache. Every process calls it together
        (rank 0 fills the shared cache, the others wait and read it), unless ``alone``: one
        process only (the end of a run, on rank 0), with no other to wait for."""
        if not samples:
            return None
        result = self.view_extraction(samples, view, alone=alone)
        if not result.ok.all():
            bad = ", ".join(str(p) for p, _ in result.failures[:3])
            raise DataError(f"images failed to decode during training: {bad}; remove them")
        return torch.from_numpy(result.features)

    def features_precision(self) -> str:
        """The precision of the frozen backbone's cached features (``fp32`` or ``bf16``)."""
        return str(self._feature_spec().precision)

    def view_extraction(
        self, samples: list[Sample], view: tuple[int, bool] = (0, False), *, alone: bool = False
    ) -> ExtractionResult:
        """:meth:`cached_features` with the extraction's result as it is: the rows of images
        that failed to decode are NaN and flagged in its ``ok`` mask, instead of raising."""
        spec = self._feature_spec().with_view(*view)
        with contextlib.nullcontext() if alone else self.context.main_first():
            return extract_features([s.path for s in samples], spec, engine=self.options.engine)

    def _precompute(
        self, runner: Callable[[torch.Tensor], torch.Tensor], samples: list[Sample]
    ) -> torch.Tensor | None:
        if not samples:
            return None
        dataset = self._dataset(samples, train=False)
        outputs, _ = precompute(runner, self._pixels(dataset, list(range(len(dataset))), 0))
        if len(outputs) != len(samples):
            raise DataError(
                "some images failed to decode during training; run graft train again to list them"
            )
        return outputs


def present(inputs: torch.Tensor | None) -> torch.Tensor:
    """The training inputs (validation guarantees there are training images)."""
    if inputs is None:
        raise DataError("the training split is empty")
    return inputs
