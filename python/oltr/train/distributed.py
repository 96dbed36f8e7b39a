"""The seam between the trainer and ``torch.distributed``.

Every helper is the identity (rank 0 of a world of 1) when ``torch.distributed`` is not
initialised, so the single-process trainer calls them unconditionally. Under ``torchrun``
the ``oltr`` command enters :func:`launched`, which initialises the process group from the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
these helpers then shard, reduce and gate I/O on rank 0.

Backends: ``gloo`` for the CPU, ``nccl`` for CUDA (chosen from the device). Under NCCL,
collectives on CPU tensors go through the rank's current CUDA device and come back.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather_object",
    "all_reduce_sum",
    "average_gradients",
    "backend_for",
    "barrier",
    "broadcast_object",
    "gather_object",
    "is_distributed",
    "is_main",
    "launched",
    "launched_world_size",
    "local_rank",
    "rank",
    "reseed_for_epoch",
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


def _needs_cuda_copy(tensor: torch.Tensor) -> bool:
    return tensor.device.type != "cuda" and dist.get_backend() == "nccl"


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it (unchanged in a single process)."""
    if is_distributed():
        if _needs_cuda_copy(tensor):
            on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            tensor.copy_(on_gpu)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks (what DDP does to the
    model's parameters); parameters without a gradient are skipped. No-op in one process."""
    if not is_distributed():
        return
    replicas = float(world_size())
    for param in parameters:
        if param.grad is not None:
            all_reduce_sum(param.grad).div_(replicas)


def all_gather_object(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_object(obj: object, dst: int = 0) -> Optional[list]:
    """Every rank's ``obj`` in rank order on rank ``dst``; ``None`` on the other ranks."""
    if not is_distributed():
        return [obj]
    out: Optional[list] = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj: object, src: int = 0) -> Any:
    """``obj`` as held by rank ``src`` (the object itself in a single process). Typed ``Any``:
    the other ranks typically pass a placeholder (``None``), so the local argument's type
    says nothing about what comes back."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def reseed_for_epoch(seed: int, epoch: int) -> None:
    """Under torch.distributed: seed this rank's Python, NumPy and torch generators from
    ``(seed, epoch, rank)``. Random data augmentation then differs between the ranks (with
    one shared seed every rank would draw the same crops for its i-th images), and an
    epoch's draws depend on nothing earlier, so ``--resume`` reproduces them whatever the
    world size before. No-op in one process (its stream is left as it is).
    """
    if not is_distributed():
        return
    from oltr.train.rng import seed_everything

    seed_everything(int(np.random.SeedSequence([int(seed), int(epoch), rank()]).generate_state(1)[0]))


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by ``torchrun`` (or another launcher) in the environment; 1 if unset.

    Raises:
        ValueError: ``WORLD_SIZE`` is set but is not a positive integer.
    """
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"environment variable WORLD_SIZE must be a positive integer, got {raw!r}")
    return size


def local_rank() -> int:
    """``LOCAL_RANK`` (this process's index on its machine; 0 if unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for(device: Union[str, torch.device, None]) -> str:
    """``"nccl"`` for a CUDA device (``"auto"`` with a GPU present), ``"gloo"`` otherwise."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return "nccl" if name.startswith("cuda") and dist.is_nccl_available() else "gloo"


@contextlib.contextmanager
def launched(device: Union[str, torch.device, None] = "auto") -> Iterator[None]:
    """Join the process group that ``torchrun`` launched, for the duration of the block.

    Does nothing when ``WORLD_SIZE`` is unset or 1, or when a group is already initialised
    (by the caller, e.g. a test). Otherwise: pins this process to GPU ``LOCAL_RANK`` when
    the backend is NCCL (so ``"cuda"`` means that GPU from then on), initialises the group
    with ``init_method="env://"`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
    and destroys it on exit.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (or a ``torch.device``): picks the backend
            (:func:`backend_for`).
    """
    if is_distributed() or launched_world_size() == 1:
        yield
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend_for(device)
    if backend == "nccl":
        if local_rank() >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank()} but only {torch.cuda.device_count()} CUDA device(s) "
                               "visible: use --nproc_per_node <= the GPU count")
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    try:
        yield
    except BaseException:
        dist.destroy_process_group()
        raise
    # No rank tears the group down (rank 0 hosts the rendezvous store) while another still
    # uses it: without this barrier a rank occasionally aborted at exit with gloo on CPU
    # ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
