"""The seam between the trainer and ``torch.distributed``.

Every helper is the identity (rank 0 of a world of 1) when ``torch.distributed`` is not
initialised, so the single-process trainer calls them unconditionally. Under ``torchrun``
the trainer (issue 5) initialises the process group; these helpers then shard, reduce and
gate I/O on rank 0.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 without torch.distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes logs, progress bars and checkpoints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without torch.distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it (unchanged in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, src: int = 0) -> object:
    """``obj`` as held by rank ``src`` (the object itself in a single process)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]
