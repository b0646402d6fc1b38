"""Data-parallel training under `torchrun`: the same command on N processes, one global batch.

`torchrun --nproc_per_node N -m flows expert train ...` starts N copies of the CLI with
`RANK`/`WORLD_SIZE` set. Each process draws the whole global batch from the same seeded
generator (so the batch sequence is the single-process one), keeps its own rows, and
DistributedDataParallel averages the gradients: with equal shards, the mean of the shard means is
the single-process mean, so the loss curve is one process's up to float rounding. Every rank
applies the same clipped update, so the ranks stay identical; rank 0 alone writes files and
talks to trackers. Gloo on the CPU, NCCL on CUDA.
"""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist

from components.errors import ConfigError


def start(device: torch.device) -> None:
    """Join the process group `torchrun` describes (a no-op for a single process or when
    already joined)."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    atexit.register(dist.destroy_process_group)


def rank_and_size() -> tuple[int, int]:
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return rank_and_size()[0] == 0


def rows_per_rank(batch_size: int) -> int:
    """Each rank's share of a global batch; refused unless it splits evenly (unequal shards
    would weigh rows unequally in the averaged gradient)."""
    size = rank_and_size()[1]
    if batch_size % size:
        raise ConfigError(f"a batch of {batch_size} rows does not split over {size} processes; "
                          f"run torchrun with a --nproc_per_node that divides {batch_size}")
    return batch_size // size


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's rows of the global batch (B, T)."""
    rows = rows_per_rank(batch.shape[0])
    rank = rank_and_size()[0]
    return batch[rank * rows:(rank + 1) * rows]


def mean(value: torch.Tensor) -> float:
    """`value` averaged over the ranks (the global batch's loss from the shards' losses)."""
    if not dist.is_initialized():
        return value.item()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` wrapped for data parallelism when several processes train; itself otherwise."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    # buffers (the routers' masks) are equal on every rank by construction: not broadcast
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
