"""Run a model once per batch and keep what scoring needs: logits, features, reachability."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # oltr.model imports oltr.inference
    from oltr.model.oltr_model import OLTRModel

__all__ = ["ModelRunner", "Outputs", "classify_features", "run_model"]


@dataclass
class Outputs:
    """Model outputs over a dataset, in input order (numpy, on the CPU).

    Attributes:
        logits: float32 ``(N, K)``.
        features: float32 ``(N, D)`` direct features (the memory's space).
        labels: int64 ``(N,)``, ``-1`` for unknown (open-set) samples; all ``-1`` when
            the inputs have no labels (prediction).
        reachability: float32 ``(N,)`` ``reach_scale / min_k ||f - c_k||`` (larger = nearer
            the memory), or None when the model has no memory / class means.
    """

    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    reachability: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @classmethod
    def concat(cls, parts: Sequence[Outputs]) -> Outputs:
        """The rows of ``parts`` one after the other (at least one part)."""
        if not parts:
            raise ValueError("no outputs to concatenate (empty dataset)")
        reach = [p.reachability for p in parts if p.reachability is not None]
        return cls(
            logits=np.concatenate([p.logits for p in parts]),
            features=np.concatenate([p.features for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            reachability=np.concatenate(reach) if len(reach) == len(parts) else None,
        )

    @classmethod
    def empty(cls, num_classes: int, feat_dim: int, with_reachability: bool) -> Outputs:
        """No rows: ``(0, K)``, ``(0, D)``, ``(0,)`` (and ``(0,)`` reachability)."""
        return cls(np.zeros((0, num_classes), np.float32), np.zeros((0, feat_dim), np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.float32) if with_reachability else None)

    def arrays(self) -> tuple[Optional[np.ndarray], ...]:
        """The fields in declaration order (for gathering across processes)."""
        return tuple(getattr(self, f.name) for f in fields(self))


class ModelRunner:
    """Runs one :class:`oltr.OLTRModel` for inference; one per model, reused across batches.

    * Stage ``oltr``: the reachability is the one the meta-embedding classifier computed in
      the forward pass (against ``centroids`` when given, else the model's memory); its
      nearest-centroid index is cached by the classifier.
    * Stage ``plain``: with ``memory`` (K, D) (the class means of the training features), the
      reachability ``reach_scale / max(min_k ||f - memory_k||, eps)`` is computed from the
      batch's direct features with a nearest-centroid index built once and reused.

    Args:
        model: the model (its device is used; it is run in eval mode, flags restored).
        memory: float ``(K, D)`` class means for a plain model's reachability, or None.
    """

    def __init__(self, model: OLTRModel, memory: Optional[Tensor] = None) -> None:
        from oltr.inference.scores import reach_scale_of
        from oltr.nn._nearest import NearestCentroidDispatch

        self.model = model
        self.memory = None if memory is None or model.stage == "oltr" else torch.as_tensor(memory).detach()
        self.reach_scale = reach_scale_of(model)
        self._nearest = NearestCentroidDispatch("auto")

    @property
    def has_reachability(self) -> bool:
        """Whether the outputs carry a reachability."""
        return self.model.stage == "oltr" or self.memory is not None

    @property
    def device(self) -> torch.device:
        return self.model.centroids.device

    def _plain_reachability(self, features: Tensor) -> Optional[Tensor]:
        if self.memory is None:
            return None
        from oltr.memory import REACHABILITY_EPS

        memory = self.memory.to(features.device, torch.float32)
        dist, _ = self._nearest(features.float(), memory)
        return self.reach_scale / dist.clamp_min(REACHABILITY_EPS)

    @torch.no_grad()
    def forward(self, images: Tensor, centroids: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(logits (B, K), direct features (B, D), reachability (B,) or None)`` of a batch of
        images already on the model's device."""
        logits, extras = self.model(images, centroids=centroids)
        reach = extras.reachability if self.model.stage == "oltr" else self._plain_reachability(extras.direct)
        return logits, extras.direct, reach

    @torch.no_grad()
    def classify(self, features: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """As :meth:`forward` for direct features ``(B, D)`` (no backbone)."""
        features = features.to(self.device)
        if self.model.stage == "oltr":
            logits, extras = self.model.classifier(features, self.model.centroids)
            return logits, features, extras.reachability
        logits, _ = self.model.classifier(features)
        return logits, features, self._plain_reachability(features)

    def classify_all(self, features: Tensor, batch_size: int) -> Outputs:
        """:class:`Outputs` of direct features float ``(N, D)`` (labels all ``-1``), by batches."""
        if features.shape[0] == 0:
            return Outputs.empty(self.model.num_classes, self.model.feat_dim, self.has_reachability)
        labels = torch.full((features.shape[0],), -1, dtype=torch.int64)
        batches = [(features[i:i + batch_size], labels[i:i + batch_size])
                   for i in range(0, features.shape[0], batch_size)]
        return self.run(batches, features=True)

    def _in_eval_mode(self):
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return modes

    def run(self, loader: Iterable, centroids: Optional[Tensor] = None, features: bool = False) -> Outputs:
        """:class:`Outputs` of every batch of ``loader``: items ``(images, labels, ...)``, or
        ``(features, labels, ...)`` with ``features=True`` (direct features, no backbone)."""
        modes = self._in_eval_mode()
        parts = []
        try:
            for batch in loader:
                x = batch[0].to(self.device, non_blocking=True)
                logits, direct, reach = self.classify(x) if features else self.forward(x, centroids)
                parts.append(Outputs(
                    logits.float().cpu().numpy(), direct.float().cpu().numpy(),
                    torch.as_tensor(batch[1]).to(torch.int64).cpu().numpy(),
                    None if reach is None else reach.float().cpu().numpy()))
        finally:
            for module, training in modes:
                module.training = training
        if not parts:
            raise ValueError("the loader yielded no batch (empty dataset)")
        return Outputs.concat(parts)


def run_model(model: OLTRModel, loader: Iterable, device: Optional[torch.device] = None,
              centroids: Optional[Tensor] = None, memory: Optional[Tensor] = None) -> Outputs:
    """Forward every batch of ``loader`` (items ``(images, labels, ...)``) in eval mode.

    ``centroids`` (K, D) is passed to the model (stage 2 during training: the live memory);
    ``None`` uses the model's own memory. ``memory``: a plain model's class means (its
    reachability). ``device`` is accepted for compatibility: batches go to the model's device.
    """
    return ModelRunner(model, memory).run(loader, centroids=centroids)


def classify_features(model: OLTRModel, features: Tensor, batch_size: int = 1024,
                      memory: Optional[Tensor] = None) -> Outputs:
    """:class:`Outputs` of direct features ``(N, D)`` (labels all ``-1``), by batches."""
    return ModelRunner(model, memory).classify_all(features, batch_size)
