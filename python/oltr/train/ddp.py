"""Wrap the trainer's model for DistributedDataParallel (identity in one process)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from oltr.train.distributed import is_distributed
from oltr.train.sync_batchnorm import convert_batchnorm

__all__ = ["wrap_model"]


def wrap_model(model: nn.Module, device: torch.device, sync_batchnorm: bool = True) -> nn.Module:
    """The module to call in training steps: ``model`` itself in one process, else
    ``DistributedDataParallel(model)`` (gradients averaged over the ranks in backward).

    With ``sync_batchnorm`` the batch norms of ``model`` are first replaced in place by
    synchronised ones (:func:`oltr.train.sync_batchnorm.convert_batchnorm`), so training
    statistics are those of the global batch as in one process; parameters keep their
    identity, so optimisers may be built before or after. Call after freezing parameters
    (DDP skips those with ``requires_grad=False``) and after moving ``model`` to ``device``.
    Keep using ``model`` (not the wrapper) for evaluation, saving and ``set_memory``.
    """
    if not is_distributed():
        return model
    if sync_batchnorm:
        convert_batchnorm(model, device)
    device_ids = [torch.cuda.current_device()] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
