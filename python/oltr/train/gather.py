"""Run a model over this rank's share and put the shares back together, in input order."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from oltr.data import merge_shards
from oltr.train.distributed import all_gather_object, gather_object, is_distributed
from oltr.train.inference import Outputs, run_model

__all__ = ["gather_outputs", "run_shard"]


def run_shard(model: nn.Module, loader: DataLoader, device: torch.device,
              centroids: Optional[torch.Tensor] = None) -> Outputs:
    """:func:`oltr.train.inference.run_model` over ``loader``, which may be empty (a rank's
    share of fewer items than ranks): then empty ``(0, K)``, ``(0, D)``, ``(0,)`` outputs."""
    if len(loader.sampler) == 0:
        return Outputs(np.zeros((0, model.num_classes), np.float32), np.zeros((0, model.feat_dim), np.float32),
                       np.zeros(0, np.int64))
    return run_model(model, loader, device, centroids=centroids)


def gather_outputs(outputs: Outputs, everywhere: bool = True) -> Optional[Outputs]:
    """The whole dataset's :class:`Outputs` from each rank's share.

    Each rank ran the model over its :class:`oltr.data.ShardedSampler` share (``shuffle=False,
    pad=False``); the shares are gathered and interleaved back into input order
    (:func:`oltr.data.merge_shards`). ``everywhere=True``: every rank gets the result;
    ``False``: rank 0 only (``None`` elsewhere; less memory for large prediction sets).
    In one process ``outputs`` is returned as is.
    """
    if not is_distributed():
        return outputs
    local = (outputs.logits, outputs.features, outputs.labels)
    shards = all_gather_object(local) if everywhere else gather_object(local)
    if shards is None:
        return None
    return Outputs(*(merge_shards([shard[i] for shard in shards]) for i in range(3)))
