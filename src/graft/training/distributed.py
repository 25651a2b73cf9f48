"""Data-parallel training across processes with PyTorch's DistributedDataParallel.

graft does not launch or coordinate processes itself: ``torchrun`` does (one process per GPU,
or per CPU socket; several nodes through torchrun's rendezvous flags), and graft reads what it
set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). In a distributed run every process holds the
same model (broadcast from rank 0 when wrapped), takes its share of every global batch (the
global batch ``--batch-size`` is split evenly across processes, so the gradients DDP averages
are those of the whole batch), and evaluates the whole validation split (identical results, so
early stopping agrees everywhere); training loss and accuracy are summed across processes. Only
rank 0 writes the run directory and its checkpoints; resuming works as in one process.

Example:
    >>> context = Distributed(rank=1, world_size=2, local_rank=1)
    >>> context.shard(list(range(11)), batch_size=4)  # batches 0-3, 4-7, 8-10 (+0 as padding)
    [2, 3, 6, 7, 10, 0]
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from graft.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run (``world_size`` 1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes and prints."""
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """This process's share of a global batch.

        Raises:
            ConfigError: The global batch does not split evenly across the processes.
        """
        if batch_size % self.world_size:
            raise ConfigError(
                f"--batch-size {batch_size} does not split evenly across {self.world_size} "
                f"processes; use a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def shard(self, order: Sequence[int], *, batch_size: int) -> list[int]:
        """This process's part of an epoch's order, global batch by global batch.

        The last, partial global batch is padded from the start of the order (as
        ``DistributedSampler`` pads) so that every process runs the same number of steps.
        """
        if not self.enabled:
            return list(order)
        local = self.local_batch(batch_size)
        items = list(order)
        shards: list[int] = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            if len(batch) % self.world_size:
                missing = self.world_size - len(batch) % self.world_size
                batch = batch + (items * (missing // max(len(items), 1) + 1))[:missing]
            size = len(batch) // self.world_size if len(batch) < batch_size else local
            shards.extend(batch[self.rank * size : (self.rank + 1) * size])
        return shards

    def barrier(self) -> None:
        """Wait for every process (no-op in one process)."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the block on rank 0 first, then on the others (e.g. filling a shared cache)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Sum numbers across processes."""
        if not self.enabled:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (e.g. a run directory named by the clock)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def wrap(self, module: Any, device: Any) -> Any:
        """``DistributedDataParallel`` around a module with trainable parameters."""
        if not self.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def identical(self, module: Any) -> bool:
        """Whether every process holds exactly the same parameters (checked at the end)."""
        if not self.enabled:
            return True
        import torch
        import torch.distributed as dist

        flat = torch.cat([p.detach().double().flatten().cpu() for p in module.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(self.world_size)]
        dist.all_gather(gathered, flat)
        return all(torch.equal(gathered[0], other) for other in gathered[1:])


def from_environment() -> Distributed:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA), if any.

    Raises:
        ConfigError: torchrun's variables are malformed.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK are not whole numbers ({err})") from err
    context = Distributed(rank, world, local)
    if context.enabled:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend)
    return context


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Re-run ``graft`` under ``torchrun --standalone --nproc_per_node nproc``; its exit code.

    Raises:
        ConfigError: ``nproc`` is below 1.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: need at least one process")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "graft",
        *argv,
    ]
    return subprocess.call(command)
