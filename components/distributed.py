"""Data-parallel training under `torchrun`: the same command on N processes, one global batch.

`torchrun --nproc_per_node N -m flows expert train ...` starts N copies of the CLI with
`RANK`/`WORLD_SIZE` set. Each process draws the whole global batch from the same seeded
generator (so the batch sequence is the single-process one), keeps its own rows, and
DistributedDataParallel averages the gradients: with equal shards, the mean of the shard means is
the single-process mean, so the loss curve is one process's up to float rounding. Every rank
applies the same clipped update, so the ranks stay identical; rank 0 alone writes files and
talks to trackers. Gloo on the CPU, NCCL on CUDA.

With `fsdp` (FSDP2, `fully_shard`) each rank holds 1/N of every parameter, gradient and
optimizer moment instead of a whole copy, for models that do not fit one device: the same
update, so the same loss curve. Parameters become DTensors sharded on dim 0 in `torch.chunk`
order; `full`, `full_state_dict` and `unsharded` gather them (a collective: every rank calls it), `like` puts
a whole tensor back into a sharded one, `first_row` finds global row 0 in a shard.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
from collections.abc import Callable

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


def send(message: dict) -> None:
    """Rank 0 tells the other ranks what comes next (a JSON-able dict; one `receive` each)."""
    dist.broadcast_object_list([json.dumps(message)], src=0)


def receive() -> dict:
    """What rank 0 `send`s; blocks until it does (or the process group's timeout)."""
    box: list[str | None] = [None]
    dist.broadcast_object_list(box, src=0)
    return json.loads(box[0])


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def parallel(model: torch.nn.Module, device: torch.device, fsdp: bool = False) -> torch.nn.Module:
    """`model` wrapped for data parallelism when several processes train; itself otherwise.

    With `fsdp`, `model` is sharded in place (each of the blocks transformers names in
    `_no_split_modules`, then the rest) and returned: its parameters are new (sharded) objects,
    so callers look them up again by name."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        blocks = set(getattr(model, "_no_split_modules", None) or ())
        for module in list(model.modules())[1:]:
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    # buffers (the routers' masks) are equal on every rank by construction: not broadcast
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a shard (all ranks must call it); a plain tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def like(whole: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`whole` laid out as `reference` is: sharded the same way, or moved to its device."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(reference, DTensor) and whole.shape == reference.shape:
        return distribute_tensor(whole.to(reference.device), reference.device_mesh,
                                 reference.placements)
    return whole.to(reference.device)


def first_row(tensor: torch.Tensor) -> torch.Tensor | None:
    """A writable view of global row 0 of `tensor`, or None when this rank's shard lacks it.
    FSDP2 shards dim 0 in `torch.chunk` order, so the row is the first of rank 0's shard."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(tensor, DTensor):
        return tensor[0]
    if tuple(tensor.placements) != (Shard(0),):
        raise ValueError(f"expected a tensor sharded on dim 0, got {tensor.placements}")
    local = tensor.to_local()
    return local[0] if tensor.device_mesh.get_local_rank() == 0 and local.shape[0] else None


def unsharded(model: torch.nn.Module,
              rebuild: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
    """The trained `model` whole on the CPU, on rank 0 (None on the others): a sharded model's
    tensors are gathered (every rank takes part) into `rebuild()`, a plain one just moves."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        return model.cpu() if is_main() else None
    state = full_state_dict(model)
    if not is_main():
        return None
    plain = rebuild()
    plain.load_state_dict(state)
    return plain


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict gathered whole onto the CPU (all ranks must call it)."""
    return {k: full(v).detach().cpu() for k, v in model.state_dict().items()}
