"""Run a model over this rank's share and put the shares back together, in input order."""
from __future__ import annotations

from collections.abc import Sized
from typing import TYPE_CHECKING, Literal, Optional, overload

import torch
from torch.utils.data import DataLoader

from oltr.data import merge_shards
from oltr.inference.outputs import ModelRunner, Outputs
from oltr.train.distributed import all_gather_object, gather_object, is_distributed

if TYPE_CHECKING:  # oltr.model imports oltr.inference
    from oltr.model.oltr_model import OLTRModel

__all__ = ["gather_outputs", "run_shard"]


def run_shard(model: OLTRModel | ModelRunner, loader: DataLoader, device: Optional[torch.device] = None,
              centroids: Optional[torch.Tensor] = None, memory: Optional[torch.Tensor] = None) -> Outputs:
    """:meth:`oltr.inference.ModelRunner.run` over ``loader``, which may be empty (a rank's
    share of fewer items than ranks): then empty ``(0, K)``, ``(0, D)``, ``(0,)`` outputs.

    ``model`` is a model (a runner is made for it with ``memory``, a plain model's class
    means) or a :class:`~oltr.inference.ModelRunner` to reuse (its caches). ``device`` is
    accepted for compatibility; batches go to the model's device.
    """
    runner = model if isinstance(model, ModelRunner) else ModelRunner(model, memory)
    # DataLoader types its sampler as a Sampler or any Iterable; ours have a length
    if isinstance(loader.sampler, Sized) and len(loader.sampler) == 0:
        return Outputs.empty(runner.model.num_classes, runner.model.feat_dim, runner.has_reachability)
    return runner.run(loader, centroids=centroids)


@overload
def gather_outputs(outputs: Outputs, everywhere: Literal[True] = ...) -> Outputs: ...


@overload
def gather_outputs(outputs: Outputs, everywhere: bool) -> Optional[Outputs]: ...


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
    # shards[r] is rank r's Outputs.arrays(): logits, features, labels, reachability (or None)
    logits, features, labels, reach = ([s[i] for s in shards] for i in range(len(local)))
    return Outputs(merge_shards(logits), merge_shards(features), merge_shards(labels),
                   None if any(r is None for r in reach) else merge_shards(reach))
