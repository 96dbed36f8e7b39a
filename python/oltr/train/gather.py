"""Put a sharded evaluation's outputs back together, in input order."""
from __future__ import annotations

from typing import Optional

from oltr.data import merge_shards
from oltr.train.distributed import all_gather_object, gather_object, is_distributed
from oltr.train.inference import Outputs

__all__ = ["gather_outputs"]


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
