"""How one training phase gets its batches: through the frozen part once, or every epoch.

A phase trains some top part of the network; everything below it is frozen and is therefore a
pure function of the image. A pipeline runs that function as cheaply as the phase allows and
hands the trainable part its input:

* ``cached-features``: head only, no augmentation: the pooled features come from graft's feature
  cache (computed once, across runs) and each epoch trains the head alone.
* ``frozen-engine``: head only, with augmentation: each augmented batch runs through the frozen
  backbone on the fast inference engine (OpenVINO on a CPU), then the head trains on it.
* ``cached-boundary``: top stages, no augmentation: the activations at the freeze boundary are
  computed once per phase, and each epoch runs only the unfrozen stages.
* ``frozen-lower``: top stages, with augmentation: the frozen lower part runs on the engine, the
  unfrozen upper part trains in PyTorch.
* ``full``: everything else (scratch, ``--bn train``, families graft cannot cut): the whole
  network in PyTorch, frozen parameters simply receive no gradient.

Validation images are never augmented, so their frozen-part outputs are computed once per phase
in every pipeline that has a frozen part.

Example:
    >>> PATHS
    ('cached-features', 'frozen-engine', 'cached-boundary', 'frozen-lower', 'full')
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from graft.data.images import load_image
from graft.engines import create_engine
from graft.errors import ConfigError, DataError

PATHS = ("cached-features", "frozen-engine", "cached-boundary", "frozen-lower", "full")
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class ImageDataset(Dataset[tuple[torch.Tensor, int] | None]):
    """Labelled image files through a transform; an unreadable file yields ``None``."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int],
        transform: Callable[[Any], torch.Tensor],
        draft: int,
    ) -> None:
        self.paths = list(paths)
        self.targets = list(targets)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            return self.transform(
                load_image(self.paths[index], draft_size=self.draft)
            ), self.targets[index]
        except DataError:
            return None


def _collate(items: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    good = [item for item in items if item is not None]
    if not good:
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.stack([pixels for pixels, _ in good]), torch.tensor([target for _, target in good])


def epoch_order(n: int, *, seed: int, epoch: int, weights: np.ndarray | None = None) -> list[int]:
    """The sample order of one epoch: a permutation (or a weighted draw for a balanced sampler).

    It depends only on (seed, epoch), so a resumed run sees exactly the batches it would have.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if weights is None:
        return torch.randperm(n, generator=generator).tolist()
    return torch.multinomial(
        torch.as_tensor(weights, dtype=torch.float64), n, replacement=True, generator=generator
    ).tolist()


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG the training step draws from (dropout, augmentation, mixup)."""
    value = seed * 1_000_003 + epoch
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value % 2**32)


def _worker_init(worker_id: int) -> None:
    value = torch.initial_seed() % 2**32
    random.seed(value)
    np.random.seed(value)


def worker_context() -> BaseContext | None:
    """The start method of decoding worker processes: never ``fork``.

    graft's process runs OpenVINO, oneTBB and OpenMP thread pools; forking a process that has
    threads copies their locks in whatever state they are in, which is undefined behaviour
    (it corrupted a notebook's interpreter). On POSIX, workers come from a ``forkserver``, a
    clean single-threaded process started once, that has already imported this module (and so
    PyTorch), so a worker starts in milliseconds; elsewhere ``spawn``.
    """
    if os.name != "posix":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def pixel_batches(
    dataset: Dataset[Any],
    order: list[int],
    *,
    batch_size: int,
    workers: int,
    seed: int,
    epoch: int,
) -> Batches:
    """Decode and transform images in ``order``, ``batch_size`` at a time, on worker processes.

    Workers start through :func:`worker_context` (never by forking this process).
    """
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        generator=torch.Generator().manual_seed(seed * 7919 + epoch),
        multiprocessing_context=worker_context() if workers else None,
    )
    try:
        for pixels, targets in loader:
            if len(targets):
                yield pixels, targets
    except (RuntimeError, BrokenPipeError, EOFError) as err:
        worker_died = isinstance(err, RuntimeError) and "DataLoader worker" in str(err)
        if not workers or not (worker_died or isinstance(err, (BrokenPipeError, EOFError))):
            raise
        raise ConfigError(
            f"a decoding worker process died ({err}): out of memory, a crash, or, when graft is "
            "called from a script, top-level code not under `if __name__ == '__main__':` "
            "(workers start fresh and import the script); fix that, or pass fewer workers "
            "(--workers 0 decodes in this process)"
        ) from err


def mixed(batches: Batches, mixer: Any) -> Batches:
    """Mix pixel batches (mixup/cutmix) before any frozen part sees them; targets become soft.

    Mixed pixels are rounded back to uint8 (at most half a grey level away), so the frozen part
    and the model see the same kind of input as always. Odd-sized batches pass unmixed.
    """
    for pixels, targets in batches:
        if mixer is None or len(targets) < 2 or len(targets) % 2:
            yield pixels, targets
            continue
        blended, soft = mixer(pixels.float(), targets)
        yield blended.round().clamp(0, 255).to(torch.uint8), soft


def tensor_batches(
    inputs: torch.Tensor, targets: torch.Tensor, order: list[int], batch_size: int
) -> Batches:
    """Batches of precomputed inputs (features or boundary activations) in ``order``."""
    index = torch.as_tensor(order, dtype=torch.long)
    for start in range(0, len(index), batch_size):
        chunk = index[start : start + batch_size]
        yield inputs[chunk], targets[chunk]


@dataclass
class FrozenRunner:
    """Runs a frozen module on uint8 pixels: an inference engine, or PyTorch without gradients."""

    run: Callable[[np.ndarray], np.ndarray]
    name: str

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(pixels.numpy()))


def frozen_runner(
    module: nn.Module,
    *,
    input_size: int,
    engine: str,
    cache_key: str | None,
    precision: str = "fp32",
) -> FrozenRunner:
    """Wrap a frozen module (uint8 pixels in) in the fastest available engine (``fp32`` or
    ``bf16``; ``cache_key`` must name the precision)."""

    runner = create_engine(
        module.eval(),
        input_size=input_size,
        engine=engine,
        device="cpu",
        cache_key=cache_key,
        precision=precision,
    )
    return FrozenRunner(runner, runner.name)


def precompute(
    runner: Callable[[torch.Tensor], torch.Tensor], batches: Batches
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run every batch through a frozen runner; return all outputs and targets."""
    outputs, targets = [], []
    for pixels, target in batches:
        outputs.append(runner(pixels))
        targets.append(target)
    if not outputs:
        raise DataError("no decodable images to train on")
    return torch.cat(outputs), torch.cat(targets)


class NormalizedLower(nn.Module):
    """uint8 pixels -> the model's normalisation -> the frozen lower part (for an engine)."""

    def __init__(self, normalize: nn.Module, lower: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.lower = lower

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lower(self.normalize(pixels))
        return out
