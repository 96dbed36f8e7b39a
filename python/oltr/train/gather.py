"""Run a model over this rank's share and put the shares back together, in input order."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from oltr.data import merge_shards
from oltr.inference.outputs import ModelRunner, Outputs
from oltr.train.distributed import all_gather_object, gather_object, is_distributed

__all__ = ["gather_outputs", "run_shard"]


def run_shard(model: nn.Module | ModelRunner, loader: DataLoader, device: Optional[torch.device] = None,
              centroids: Optional[torch.Tensor] = None, memory: Optional[torch.Tensor] = None) -> Outputs:
    """:meth:`oltr.inference.ModelRunner.run` over ``loader``, which may be empty (a rank's
    share of fewer items than ranks): then empty ``(0, K)``, ``(0, D)``, ``(0,)`` outputs.

    ``model`` is a model (a runner is made for it with ``memory``, a plain model's class
    means) or a :class:`~oltr.inference.ModelRunner` to reuse (its caches). ``device`` is
    accepted for compatibility; batches go to the model's device.
    """
    runner = model if isinstance(model, ModelRunner) else ModelRunner(model, memory)
    if len(loader.sampler) == 0:
        return Outputs.empty(runner.model.num_classes, runner.model.feat_dim, runner.has_reachability)
    return runner.run(loader, centroids=centroids)


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
    local = outputs.arrays()
    shards = all_gather_object(local) if everywhere else gather_object(local)
    if shards is None:
        return None
    merged = [None if any(s[i] is None for s in shards) else merge_shards([s[i] for s in shards])
              for i in range(len(local))]
    return Outputs(*merged)
