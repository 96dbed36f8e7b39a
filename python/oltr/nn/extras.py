"""What a classifier (and the whole model) returns beside its logits: one type, :class:`Extras`."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from torch import Tensor

__all__ = ["ClassifierExtras", "Extras"]


class Extras(NamedTuple):
    """Named side outputs of :class:`~oltr.nn.MetaEmbeddingClassifier`, of the plain
    :class:`~oltr.nn.DotProductClassifier` (which fills only ``direct``) and of
    :class:`~oltr.OLTRModel` (which adds ``attention``). Fields a producer does not compute
    are ``None``.

    Shapes use B = batch, D = feature dim; float tensors have the input's dtype, except
    ``nearest`` (int64).

    * ``direct``: (B, D) the input feature (the official ``direct_feature``); apply
      :class:`~oltr.nn.DiscCentroidsLoss` to it.
    * ``infused``: (B, D) ``selector * memory``, **not** multiplied by the reachability (D21).
    * ``memory``: (B, D) ``softmax(fc_hallucinator(x)) @ centroids``.
    * ``selector``: (B, D) ``tanh(fc_selector(x))``.
    * ``reachability``: (B,) ``reach_scale / max(nearest_distance, REACHABILITY_EPS)``,
      computed once per batch by the classifier (consumers read it here rather than
      searching the memory again).
    * ``nearest``: (B,) int64 index of the nearest centroid.
    * ``nearest_distance``: (B,) exact L2 distance ``min_k ||x - c_k||`` to that centroid.
    * ``meta_embedding``: (B, D) ``reachability * (direct + infused)``, the cosine
      classifier's input.
    * ``attention``: the backbone's :class:`~oltr.nn.AttentionMaps` (set by
      :class:`~oltr.OLTRModel`; ``None`` from a classifier or a backbone without attention).
    """

    direct: Tensor
    infused: Optional[Tensor] = None
    memory: Optional[Tensor] = None
    selector: Optional[Tensor] = None
    reachability: Optional[Tensor] = None
    nearest: Optional[Tensor] = None
    nearest_distance: Optional[Tensor] = None
    meta_embedding: Optional[Tensor] = None
    attention: Optional[Any] = None


#: The name this type had as the classifiers' return value (the same type).
ClassifierExtras = Extras
