"""Meta-embedding classifier (official ``MetaEmbedding_Classifier``)."""
from __future__ import annotations

from functools import partial
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

#: An exponential's cost in multiply-adds, for splitting the softmax's work (roughly).
_EXP_COST = 8


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
    of the centroids, a transposed copy of the centroids for the memory read-out, the
    normalised cosine weights, and transposed (D, K) copies of the hallucinator and normalised
    cosine weights: for every batch on the numpy path below, for single rows on the torch
    path), the softmax folded into the memory read-out (the
    exponentials times the memory, then divided by their sums). With CPU float32 or float64
    tensors and numpy on an OpenBLAS it can drive, the products run on numpy, cut into tiles
    that the caller and ``torch.get_num_threads() - 1`` helper threads share
    (:mod:`oltr.nn._products`), and the cosine logits come from the cosine layer's inference
    methods (its forward hooks do not run); otherwise the same caches feed torch products.
    Results equal the formulas to float32 rounding and do not depend on the thread count nor
    on the other rows' values; on the numpy path (K x D >= 2^20 for batches of 2+ rows) a row's bits are the same
    in any batch of 3 rows or more (batches of one or two rows take OpenBLAS's other kernels:
    float32 rounding apart). Training and autograd always run the formulas above as written. The extras
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
        self._bank_t = DerivedCache()  # the centroids, transposed, for the memory read-out
        self._hallucinator_t = DerivedCache()  # fc_hallucinator.weight transposed (numpy path; torch: single rows)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_bank_t", DerivedCache())
        state.setdefault("_hallucinator_t", DerivedCache())
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
        ``"unit_weight"`` (the normalised cosine weights), ``"centroids_t"`` (the transposed
        centroids of the memory read-out), ``"weights_t"`` (the transposed hallucinator and
        normalised cosine weights: every batch on the numpy path, single rows on the torch path)."""
        return {"index": self.nearest.builds, "unit_weight": self.cosnorm_classifier._unit_weight.builds,
                "centroids_t": self._bank_t.builds,
                "weights_t": self._hallucinator_t.builds + self.cosnorm_classifier._unit_weight_t.builds}

    def clear_caches(self) -> None:
        """Forget the inference caches (Rust index, normalised cosine weights, transposed
        centroids, transposed weights). Needed only after writing a weight or the centroids in place through
        ``.data`` (every other change is detected)."""
        self.nearest.clear()
        self.cosnorm_classifier.clear_cache()
        self._bank_t.clear()
        self._hallucinator_t.clear()

    def forward(self, x: Tensor, centroids: Tensor) -> tuple[Tensor, Extras]:
        """``x`` (B, feat_dim), ``centroids`` (K, feat_dim) -> ``(logits (B, K), Extras)``."""
        logits, extras = self._forward(x, centroids, True)
        assert logits is not None
        return logits, extras

    def forward_features(self, x: Tensor, centroids: Tensor) -> Extras:
        """Everything :meth:`forward` computes but the cosine logits (the meta-embedding,
        reachability, nearest centroid, memory...): ``forward``'s Extras, bit for bit, for
        callers that need no logits (enrollment imprints from the meta-embeddings; at
        K = 1e5 the cosine product is a third of the head)."""
        return self._forward(x, centroids, False)[1]

    def _forward(self, x: Tensor, centroids: Tensor, with_logits: bool) -> tuple[Optional[Tensor], Extras]:
        if x.dim() != 2 or x.shape[1] != self.feat_dim:
            raise ValueError(f"x must have shape (B, {self.feat_dim}), got {tuple(x.shape)}")
        if (not isinstance(centroids, Tensor) or centroids.dim() != 2
                or tuple(centroids.shape) != (self.num_classes, self.feat_dim)):
            shape = tuple(centroids.shape) if isinstance(centroids, Tensor) else type(centroids).__name__
            raise ValueError(f"centroids must have shape ({self.num_classes}, {self.feat_dim}), got {shape}")
        if centroids.device != x.device:
            raise ValueError(f"centroids are on {centroids.device} but x is on {x.device}")
        weight = self.fc_hallucinator.weight
        if inference_fast_path(self, x) and _products.available(
                weight.shape[0] * weight.shape[1], x.shape[0], x, centroids, weight, self.fc_selector.weight,
                self.cosnorm_classifier.weight):
            with _products.single_threaded_blas():
                return self._numpy_inference(x, centroids, with_logits)
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

    def _numpy_inference(self, x: Tensor, centroids: Tensor, with_logits: bool) -> tuple[Optional[Tensor], Extras]:
        """The inference forward on numpy's BLAS (:mod:`oltr.nn._products`), in three phases
        of tiles that the threads share: the selector and the hallucinator scores (with each
        tile's row maxima); the exponentials, their sums and their products with the memory,
        per column range of the scores (summed in range order: deterministic), then the
        meta-embedding and its squash; the cosine product."""
        xa = _products.view(x)
        dtype, (batch, dim) = xa.dtype, xa.shape
        nearest: list[Tensor] = []  # (distance, index), from the search task
        reach = np.empty(batch, dtype)
        # the transposed copy (D, K): OpenBLAS's x @ W.T reads it 1.0-2.5x faster than the
        # (K, D) weight (one thread, D = 512: 1.8-2.5x at B <= 10, 1.3x at B = 64, 1.02x at 1024)
        hallucinator = _products.view(self._hallucinator_t.get(self.fc_hallucinator.weight, _transposed))
        classes = hallucinator.shape[1]
        score_tiles = _products.tiles(batch, classes, dim)
        # each column range's slot in the per-range arrays (ranges need not be equally wide)
        slots = {c0: i for i, c0 in enumerate(sorted({tile[2] for tile in score_tiles}))}
        ranges = len(slots)
        scores = np.empty((batch, classes), dtype)
        maxima, sums = np.empty((ranges, batch), dtype), np.empty((ranges, batch), dtype)
        top = np.empty(batch, dtype)
        selector, parts = np.empty((batch, dim), dtype), np.empty((ranges, batch, dim), dtype)
        memory, infused, meta, scaled = (np.empty((batch, dim), dtype) for _ in range(4))
        bank_t = _products.view(self._bank_t.get(centroids, _transposed))
        cosine = self.cosnorm_classifier
        if with_logits:
            logits, cosine_tasks = cosine.inference_product(scaled)

        def search(tile: _products.Tile) -> None:  # a task: runs beside the first products
            nearest.extend(self.nearest(x, centroids))

        def meta_embedding() -> None:  # between the read-out and the cosine product
            # reach_scale / max(d, eps) rounded as torch's scalar / tensor (a reciprocal, then a product)
            np.reciprocal(np.maximum(_products.view(nearest[0]), dtype.type(REACHABILITY_EPS)), out=reach)
            np.multiply(reach, dtype.type(self.reach_scale), out=reach)
            np.sum(parts, axis=0, out=memory)  # in order: deterministic
            np.divide(memory, sums.sum(axis=0)[:, None], out=memory)
            np.multiply(selector, memory, out=infused)
            np.add(xa, infused, out=meta)
            np.multiply(meta, reach[:, None], out=meta)
            if with_logits:
                cosine.squash_into(meta, scaled)

        # the cosine layer's inference methods, not its module call (as nn.MultiheadAttention
        # uses its out_proj's weight): forward hooks on the cosine layer do not run here
        _products.run_phases([
            ([(search, (), [(0, batch, 0, 0)]),
              (_selector_into, (xa, _products.view(self.fc_selector.weight), _products.view(self.fc_selector.bias),
                                selector), _products.tiles(batch, dim, dim)),
              (_scores_into, (xa, hallucinator, _products.view(self.fc_hallucinator.bias), scores, maxima, slots,
                              True), score_tiles)],
             partial(np.max, maxima, axis=0, out=top)),
            ([(_readout_into, (scores, top, bank_t, sums, parts, slots), score_tiles)], meta_embedding),
            *([([cosine_tasks], None)] if with_logits else [])],
            batch * classes * ((3 if with_logits else 2) * dim + _EXP_COST))
        extras = Extras(direct=x, infused=torch.from_numpy(infused), memory=torch.from_numpy(memory),
                        selector=torch.from_numpy(selector), reachability=torch.from_numpy(reach),
                        nearest=nearest[1], nearest_distance=nearest[0], meta_embedding=torch.from_numpy(meta))
        return (torch.from_numpy(logits) if with_logits else None), extras

    def extra_repr(self) -> str:
        return (f"feat_dim={self.feat_dim}, num_classes={self.num_classes}, reach_scale={self.reach_scale}, "
                f"logit_scale={self.logit_scale}")


def _transposed(matrix: Tensor) -> Tensor:
    # (D, K) contiguous. Centroids: torch.mm(p, .t()) reads them ~2x faster than the (K, D)
    # layout at small batches with MKL on this CPU (1 x 1e4 @ 1e4 x 512: ~0.9 vs ~1.7 ms), and
    # a row's result still does not depend on the other rows of its batch. Hallucinator
    # weight: on the numpy path for every batch (see _numpy_inference); on the torch path for
    # a single row, torch.addmm(b, x, .) (~0.8 vs ~2 ms at K = 1e4), while its batches of
    # more rows keep W.t(), with which MKL gives a row the same logits in any batch.
    return matrix.t().contiguous()


def _selector_into(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray, tile: _products.Tile) -> None:
    """``out = tanh(x @ W.T + b)`` of the selector on ``tile`` (a task of the numpy path)."""
    _products.product_into(x, weight, out, False, tile)
    r0, r1, c0, c1 = tile
    block = out[r0:r1, c0:c1]
    block += bias[c0:c1]
    np.tanh(block, out=block)


def _scores_into(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, scores: np.ndarray, maxima: np.ndarray,
                 slots: dict[int, int], transposed: bool, tile: _products.Tile) -> None:
    """The hallucinator scores ``x @ W.T + b`` on ``tile`` of ``scores`` (B, K), and the
    tile's row maxima into row ``slots[c0]`` of ``maxima`` (C, B), one row per column range
    (a task of the numpy path)."""
    _products.product_into(x, weight, scores, transposed, tile)
    r0, r1, c0, c1 = tile
    block = scores[r0:r1, c0:c1]
    block += bias[c0:c1]
    block.max(axis=1, out=maxima[slots[c0], r0:r1])


def _readout_into(scores: np.ndarray, top: np.ndarray, bank_t: np.ndarray, sums: np.ndarray, parts: np.ndarray,
                  slots: dict[int, int], tile: _products.Tile) -> None:
    """The softmax read-out's share of ``tile`` of ``scores`` (B, K), in place:
    ``e = exp(scores - top)`` on the tile, its row sums into ``sums[c, r0:r1]`` and
    ``e @ bank[c0:c1]`` into ``parts[c, r0:r1]`` (C, B, D), c = ``slots[c0]``, from ``bank_t``
    = bank.T (D, K). The memory is the parts' sum over c divided by the sums' (a task of the
    numpy path)."""
    r0, r1, c0, c1 = tile
    column = slots[c0]
    block = scores[r0:r1, c0:c1]
    block -= top[r0:r1, None]
    np.exp(block, out=block)
    block.sum(axis=1, out=sums[column, r0:r1])
    np.matmul(block, bank_t[:, c0:c1].T, out=parts[column, r0:r1])


def _softmax_readout(scores: Tensor, bank_t: Tensor) -> Tensor:
    """``softmax(scores, 1) @ bank`` without autograd, in place on ``scores`` (B, K), from
    ``bank_t`` = ``bank.t()`` contiguous (D, K): the exponentials are multiplied by the bank
    first and the (B, D) result is divided by their row sums, so no (B, K) division pass is
    made."""
    scores.sub_(scores.amax(dim=1, keepdim=True)).exp_()
    total = scores.sum(dim=1, keepdim=True)
    return torch.mm(scores, bank_t.t()).div_(total)
