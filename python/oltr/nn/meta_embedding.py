"""Meta-embedding classifier (official ``MetaEmbedding_Classifier``)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from oltr.memory.index import REACHABILITY_EPS, REACHABILITY_SCALE
from oltr.nn import _products
from oltr.nn._nearest import NearestCentroidDispatch
from oltr.nn._weight_cache import DerivedCache
from oltr.nn.cosnorm import CosNormClassifier, inference_fast_path, resolve_logit_scale
from oltr.nn.extras import Extras

__all__ = ["MetaEmbeddingClassifier"]


class MetaEmbeddingClassifier(nn.Module):
    """Meta-embedding + cosine classifier, exactly the official forward::

        d_b      = min_k ||x_b - c_k||                 nearest = argmin
        reach    = reach_scale / max(d, 1e-12)         (B,)  (official: inf at d = 0)
        memory   = softmax(fc_hallucinator(x)) @ C     (B, D)
        selector = tanh(fc_selector(x))                (B, D)
        infused  = selector * memory                   (not scaled by reach, D21)
        meta     = reach * (x + infused)
        logits   = cosnorm_classifier(meta)            (B, K)

    Parameters (official state-dict keys): ``fc_hallucinator.{weight (K,D), bias (K,)}``,
    ``fc_selector.{weight (D,D), bias (D,)}``, ``cosnorm_classifier.weight (K,D)``.
    ``reach_scale`` defaults to :data:`oltr.memory.index.REACHABILITY_SCALE` (10, the official
    constant); ``logit_scale`` (default 16) is the cosine classifier's scale (``scale=`` is
    its deprecated name).

    ``forward(x, centroids) -> (logits, Extras)`` with ``x`` (B, D) float and ``centroids``
    (K, D). The centroids enter **detached** (the official training passes
    ``criterion.centroids.data``), so the CE loss never moves the memory; gradients reach
    ``x`` through direct, hallucinator, selector and the reachability (through the nearest
    centroid's distance). The nearest centroid comes from the Rust core at CPU inference and
    from the differentiable torch path otherwise (``nearest_backend``: ``"auto"``, ``"torch"``,
    ``"rust"``; see :mod:`oltr.nn._nearest`). ``squash`` selects the cosine classifier's form.

    Inference (eval mode, autograd off, no autocast) runs the same formulas with what only
    depends on the weights and memory built once and kept until they change (the Rust index
    of the centroids, the normalised cosine weights, transposed copies of the weights), the
    softmax folded into the memory read-out (the exponentials times the memory, then divided
    by their sums). With float32 CPU tensors and the Rust core, everything after the nearest
    centroid search is one core call (``oltr._core.meta_embedding``, :mod:`oltr.nn._products`:
    batch-invariant products and elementwise steps), so a row's results have the same bits in
    any batch, at any thread count, and the cosine logits come from the cosine layer's
    inference method (its forward hooks do not run; ``oltr._core.cosine_logits``). Otherwise (float64, GPU, no core) the
    same caches feed torch products. Either way the results equal the formulas to float32
    rounding. Training and autograd always run the formulas above as written. The extras
    carry the batch's nearest distance and reachability, so no consumer searches again.
    """

    def __init__(self, feat_dim: int, num_classes: int, reach_scale: float = REACHABILITY_SCALE,
                 logit_scale: Optional[float] = None, squash: str = "code", nearest_backend: str = "auto",
                 *, scale: Optional[float] = None) -> None:
        super().__init__()
        if int(feat_dim) < 1 or int(num_classes) < 1:
            raise ValueError(f"feat_dim and num_classes must be >= 1, got {feat_dim} and {num_classes}")
        self.feat_dim = int(feat_dim)
        self.num_classes = int(num_classes)
        self.reach_scale = float(reach_scale)
        logit_scale = resolve_logit_scale(logit_scale, scale, type(self).__name__)
        self.fc_hallucinator = nn.Linear(self.feat_dim, self.num_classes)
        self.fc_selector = nn.Linear(self.feat_dim, self.feat_dim)
        self.cosnorm_classifier = CosNormClassifier(self.feat_dim, self.num_classes, logit_scale, squash=squash)
        self.nearest = NearestCentroidDispatch(nearest_backend)
        self._bank_t = DerivedCache()  # the centroids, transposed: the torch path's memory read-out
        self._hallucinator_t = DerivedCache()  # fc_hallucinator.weight transposed (core path; torch: single rows)
        self._selector_t = DerivedCache()  # fc_selector.weight transposed (core path)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_bank_t", DerivedCache())
        state.setdefault("_hallucinator_t", DerivedCache())
        state.setdefault("_selector_t", DerivedCache())
        super().__setstate__(state)

    @property
    def logit_scale(self) -> float:
        """The cosine classifier's scale (``|logit| < logit_scale`` with the code squash)."""
        return self.cosnorm_classifier.logit_scale

    @property
    def nearest_backend(self) -> str:
        return self.nearest.backend

    @nearest_backend.setter
    def nearest_backend(self, backend: str) -> None:
        self.nearest = NearestCentroidDispatch(backend)

    @property
    def cache_builds(self) -> dict[str, int]:
        """How many times each inference cache was built since the last :meth:`clear_caches`
        (for tests and diagnostics): ``"index"`` (the Rust index of the centroids),
        ``"unit_weight"`` (the normalised cosine weights: torch path), ``"centroids_t"`` (the
        transposed centroids of the torch path's memory read-out), ``"weights_t"`` (the
        transposed hallucinator, selector and normalised cosine weights: every batch on the
        core path; the hallucinator's and cosine's for single rows on the torch path)."""
        return {"index": self.nearest.builds, "unit_weight": self.cosnorm_classifier._unit_weight.builds,
                "centroids_t": self._bank_t.builds,
                "weights_t": self._hallucinator_t.builds + self._selector_t.builds
                + self.cosnorm_classifier._unit_weight_t.builds}

    def clear_caches(self) -> None:
        """Forget the inference caches (Rust index, normalised cosine weights, transposed
        centroids, transposed weights). Needed only after writing a weight or the centroids in place through
        ``.data`` (every other change is detected)."""
        self.nearest.clear()
        self.cosnorm_classifier.clear_cache()
        self._bank_t.clear()
        self._hallucinator_t.clear()
        self._selector_t.clear()

    def forward(self, x: Tensor, centroids: Tensor) -> tuple[Tensor, Extras]:
        """``x`` (B, feat_dim), ``centroids`` (K, feat_dim) -> ``(logits (B, K), Extras)``."""
        logits, extras = self._forward(x, centroids, True)
        assert logits is not None
        return logits, extras

    def forward_features(self, x: Tensor, centroids: Tensor) -> Extras:
        """Everything :meth:`forward` computes but the cosine logits (the meta-embedding,
        reachability, nearest centroid, memory...): ``forward``'s Extras, bit for bit, for
        callers that need no logits (at K = 1e5 the cosine product is a third of the head)."""
        return self._forward(x, centroids, False)[1]

    def meta_directions(self, x: Tensor, centroids: Tensor) -> Tensor:
        """Unit meta-embeddings (B, D) float32 of ``x`` (B, D) at inference (no autograd): the
        direction of ``forward``'s ``meta_embedding``. The reachability scales each row by a
        positive factor, so the direction is that of ``x + selector * memory`` and no
        nearest-centroid search is made (float32 rounding apart, the same as normalising
        :meth:`forward_features`' meta-embeddings; enrollment imprints from these)."""
        self._check_inputs(x, centroids)
        with torch.no_grad():
            layers = self.fc_hallucinator, self.fc_selector
            if inference_fast_path(self, x) and _products.available(x, centroids, *(layer.weight for layer in layers)):
                direction = torch.from_numpy(self._core_meta(x, centroids, None, *layers)[3])
            else:
                meta = self.forward_features(x, centroids).meta_embedding
                assert meta is not None  # the head's extras always carry it
                direction = meta
            return torch.nn.functional.normalize(direction.float(), dim=1)

    def _check_inputs(self, x: Tensor, centroids: Tensor) -> None:
        """ValueError naming what is wrong with ``x`` (B, D) or ``centroids`` (K, D), if anything."""
        if x.dim() != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"x must have shape (B, {self.feat_dim}), got {tuple(x.shape)}")
        if (not isinstance(centroids, Tensor) or centroids.dim() != 2
                or tuple(centroids.shape) != (self.num_classes, self.feat_dim)):
            shape = tuple(centroids.shape) if isinstance(centroids, Tensor) else type(centroids).__name__
            raise ValueError(f"centroids must have shape ({self.num_classes}, {self.feat_dim}), got {shape}")
        if centroids.device != x.device:
            raise ValueError(f"centroids are on {centroids.device} but x is on {x.device}")

    def _forward(self, x: Tensor, centroids: Tensor, with_logits: bool) -> tuple[Optional[Tensor], Extras]:
        self._check_inputs(x, centroids)
        if inference_fast_path(self, x):
            layers = self.fc_hallucinator, self.fc_selector, self.cosnorm_classifier
            if _products.available(x, centroids, *(layer.weight for layer in layers)):
                return self._core_inference(x, centroids, with_logits, *layers)
        nearest_dist, nearest_idx = self.nearest(x, centroids)
        reachability = self.reach_scale / nearest_dist.clamp_min(REACHABILITY_EPS)
        if inference_fast_path(self, x):
            if centroids.dtype == x.dtype:
                bank_t = self._bank_t.get(centroids, _transposed)
            else:
                bank_t = centroids.to(x.dtype).t().contiguous()
            if x.shape[0] == 1:  # a single row: the weight's transposed copy reads ~2.5x faster
                weight_t = self._hallucinator_t.get(self.fc_hallucinator.weight, _transposed)
                scores = torch.addmm(self.fc_hallucinator.bias, x, weight_t)
            else:
                scores = self.fc_hallucinator(x)
            memory = _softmax_readout(scores, bank_t)
            selector = self.fc_selector(x).tanh_()
            infused = selector * memory
            meta_embedding = (x + infused).mul_(reachability.unsqueeze(1))
        else:
            memory = torch.softmax(self.fc_hallucinator(x), dim=1) @ centroids.detach().to(x.dtype)
            selector = torch.tanh(self.fc_selector(x))
            infused = selector * memory
            meta_embedding = reachability.unsqueeze(1) * (x + infused)
        logits = self.cosnorm_classifier(meta_embedding) if with_logits else None
        extras = Extras(direct=x, infused=infused, memory=memory, selector=selector, reachability=reachability,
                        nearest=nearest_idx, nearest_distance=nearest_dist, meta_embedding=meta_embedding)
        return logits, extras

    def _core_inference(self, x: Tensor, centroids: Tensor, with_logits: bool, hallucinator: nn.Linear,
                        selector_layer: nn.Linear, cosine: CosNormClassifier) -> tuple[Optional[Tensor], Extras]:
        """The inference forward on the Rust core, on float32 CPU tensors: the nearest
        centroid from the cached Rust index, the meta-embedding (:meth:`_core_meta`), then the
        cosine layer's :meth:`~oltr.nn.CosNormClassifier.inference_logits` (its forward hooks
        do not run, as ``nn.MultiheadAttention`` does not call its ``out_proj``). The layers
        are this head's, passed in to look them up once."""
        nearest_dist, nearest_idx = self.nearest(x, centroids)
        memory, selector, infused, meta, reach = self._core_meta(x, centroids, nearest_dist, hallucinator,
                                                                 selector_layer)
        assert reach is not None  # a distance was given
        logits = torch.from_numpy(cosine.inference_logits(meta)) if with_logits else None
        extras = Extras(direct=x, infused=torch.from_numpy(infused), memory=torch.from_numpy(memory),
                        selector=torch.from_numpy(selector), reachability=torch.from_numpy(reach),
                        nearest=nearest_idx, nearest_distance=nearest_dist, meta_embedding=torch.from_numpy(meta))
        return logits, extras

    def _core_meta(self, x: Tensor, centroids: Tensor, nearest_dist: Optional[Tensor], hallucinator: nn.Linear,
                   selector_layer: nn.Linear) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                       Optional[np.ndarray]]:
        """``(memory, selector, infused, meta (B, D), reachability (B,) or None)`` float32 of
        ``x`` (B, D) from :func:`oltr.nn._products.meta_embedding` (one core call) with the
        cached transposed hallucinator and selector weights; without ``nearest_dist`` (B,) the
        meta-embedding is not scaled (``x + infused``) and no reachability is returned."""
        view = _products.view
        return _products.meta_embedding(
            view(x), view(self._hallucinator_t.get(hallucinator.weight, _transposed)), view(hallucinator.bias),
            view(centroids), view(self._selector_t.get(selector_layer.weight, _transposed)),
            view(selector_layer.bias), None if nearest_dist is None else view(nearest_dist),
            self.reach_scale, REACHABILITY_EPS)

    def extra_repr(self) -> str:
        return (f"feat_dim={self.feat_dim}, num_classes={self.num_classes}, reach_scale={self.reach_scale}, "
                f"logit_scale={self.logit_scale}")


def _transposed(matrix: Tensor) -> Tensor:
    # (in, out) contiguous: the core path's product operand (x @ W.T = x @ this) for the
    # hallucinator and selector weights; on the torch path, the centroids of the memory
    # read-out (torch.mm(p, .t()) read them ~2x faster than the (K, D) layout at small batches
    # with MKL on this CPU) and the hallucinator weight for a single row (torch.addmm(b, x, .):
    # ~0.8 vs ~2 ms at K = 1e4), while its batches of more rows keep W.t(), with which MKL
    # gives a row the same logits in any batch.
    return matrix.t().contiguous()


def _softmax_readout(scores: Tensor, bank_t: Tensor) -> Tensor:
    """``softmax(scores, 1) @ bank`` without autograd, in place on ``scores`` (B, K), from
    ``bank_t`` = ``bank.t()`` contiguous (D, K): the exponentials are multiplied by the bank
    first and the (B, D) result is divided by their row sums, so no (B, K) division pass is
    made."""
    scores.sub_(scores.amax(dim=1, keepdim=True)).exp_()
    total = scores.sum(dim=1, keepdim=True)
    return torch.mm(scores, bank_t.t()).div_(total)
