"""What a classifier returns beside its logits."""
from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor

__all__ = ["ClassifierExtras"]


class ClassifierExtras(NamedTuple):
    """Named side outputs of :class:`~oltr.nn.MetaEmbeddingClassifier` (and of the plain
    :class:`~oltr.nn.DotProductClassifier`, which fills only ``direct``).

    Shapes use B = batch, D = feature dim; all float32 except ``nearest`` (int64).

    * ``direct``: (B, D) the input feature (the official ``direct_feature``); apply
      :class:`~oltr.nn.DiscCentroidsLoss` to it.
    * ``infused``: (B, D) ``selector * memory``, **not** multiplied by the reachability (D21).
    * ``memory``: (B, D) ``softmax(fc_hallucinator(x)) @ centroids``.
    * ``selector``: (B, D) ``tanh(fc_selector(x))``.
    * ``reachability``: (B,) ``reach_scale / min_k ||x - c_k||``.
    * ``nearest``: (B,) int64 index of the nearest centroid.
    * ``meta_embedding``: (B, D) ``reachability * (direct + infused)``, the cosine
      classifier's input.
    """

    direct: Tensor
    infused: Optional[Tensor] = None
    memory: Optional[Tensor] = None
    selector: Optional[Tensor] = None
    reachability: Optional[Tensor] = None
    nearest: Optional[Tensor] = None
    meta_embedding: Optional[Tensor] = None
