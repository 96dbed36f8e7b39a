"""Appending a class's rows to a model, its inference caches and its imprint statistics, in
O(D) per class (amortised), for :mod:`oltr.model.enrollment`.

A class is a row of several (K, ...) tensors (the ``centroids`` buffer, the hallucinator or
``fc`` weight and bias, the cosine weight) and a row or column of each inference cache derived
from them (the Rust index of the centroids, the transposed centroids and hallucinator weight,
the normalised cosine weight and its transpose). Concatenating would copy every tensor and
drop every cache, so the first batch after an enrollment would rebuild them: O(K·D) per class,
about one index rebuild at K = 1e5. Here:

* the tensors grow into spare room (:func:`oltr.nn._growable.append_along`; one O(K·D) copy
  per ~K/4 classes) and keep their names, so ``state_dict`` keys stay the same (the model's
  state-dict hook stores them without the room);
* each cache that was current for the old tensor gets the new row appended the same way (its
  value equals a rebuild: rows are normalised one by one, transposes are copies) and is kept
  for the new tensor (:meth:`oltr.nn._weight_cache.DerivedCache.adopt`); the Rust index takes
  an edit (:meth:`oltr.nn._nearest.NearestCentroidDispatch.extend`). A cache that was not
  current is left to be built on first use, as before;
* :class:`ImprintStats` keeps the sums over the existing classes that the imprint rules
  average (row norms, each class's logit at its own mean), updated per class instead of
  recomputed.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from oltr.nn._growable import append_along, compact_state_dict_hook, reserve_along
from oltr.nn._nearest import source_key
from oltr.nn._weight_cache import DerivedCache, weight_key
from oltr.nn.cosnorm import _normalise_rows

__all__ = ["ImprintStats", "add_class_to_stats", "append_class_rows", "drop_class_rows", "imprint_stats",
           "reserve_classes"]


def _replace(owner: nn.Module, name: str, value: Tensor) -> None:
    """Make ``value`` parameter or buffer ``name`` of ``owner`` (same name, grad flag, and the
    spare room ``value`` grows into)."""
    old = getattr(owner, name)
    room = getattr(value, "_oltr_room", None)
    if room is not None and not getattr(owner, "_oltr_compact_state", False):
        owner.register_state_dict_post_hook(compact_state_dict_hook)
        owner._oltr_compact_state = True  # type: ignore[assignment]
    if name in owner._parameters:
        param = nn.Parameter(value, requires_grad=old.requires_grad)
        if room is not None:
            param._oltr_room = room  # type: ignore[attr-defined]
        setattr(owner, name, param)
    else:
        setattr(owner, name, value)


def drop_class_rows(model: Any, label: int) -> None:
    """Remove class ``label``'s row from every class-indexed tensor of ``model`` (an O(K·D)
    copy each) and set the class count; the caller clears the caches (labels shift)."""
    for _, owner, name, _ in _tracked(model):
        old = getattr(owner, name)
        if old is not None:
            old = old.detach()
            _replace(owner, name, torch.cat([old[:label], old[label + 1:]]).contiguous())
    _set_num_classes(model, int(model.centroids.shape[0]))


def _set_num_classes(model: Any, count: int) -> None:
    """K of the model and its classifier's layers (from their first dimensions, which the
    caller has set; the cosine rows may follow a moment later)."""
    model.num_classes = count
    classifier = model.classifier
    classifier.num_classes = count
    if model.stage == "oltr":
        classifier.fc_hallucinator.out_features = count
        classifier.cosnorm_classifier.out_dims = count
    else:
        classifier.fc.out_features = count


#: (cache, dimension its rows grow along, rows of the cache from stored rows (m, D) of the weight)
_CacheRows = tuple[DerivedCache, int, Callable[[Tensor], Tensor]]


def _transpose(rows: Tensor) -> Tensor:
    return rows.t()


def _unit_transpose(rows: Tensor) -> Tensor:
    return _normalise_rows(rows).t()


def _tracked(model: Any) -> list[tuple[str, nn.Module, str, list[_CacheRows]]]:
    """Each class-indexed tensor of ``model`` as (key, owner, attribute name, the caches
    derived from it), in the order enrollment appends them (the cosine rows last). Keys:
    ``"centroids"``, ``"weight"`` / ``"bias"`` (the hallucinator's; ``fc``'s in the plain
    stage) and ``"cosine"``."""
    classifier = model.classifier
    if model.stage != "oltr":
        return [("centroids", model, "centroids", []), ("weight", classifier.fc, "weight", []),
                ("bias", classifier.fc, "bias", [])]
    layer, cosnorm = classifier.fc_hallucinator, classifier.cosnorm_classifier
    return [("centroids", model, "centroids", [(classifier._bank_t, 1, _transpose)]),
            ("weight", layer, "weight", [(classifier._hallucinator_t, 1, _transpose)]),
            ("bias", layer, "bias", []),
            ("cosine", cosnorm, "weight",
             [(cosnorm._unit_weight, 0, _normalise_rows), (cosnorm._unit_weight_t, 1, _unit_transpose)])]


def _grow(owner: nn.Module, name: str, caches: list[_CacheRows], rows: Optional[Tensor], extra: int = 0) -> None:
    """Append ``rows`` (m, ...) to ``owner.<name>`` and to each of its ``caches`` that is
    current, or (``rows`` None) make room for ``extra`` more rows in both. A cache that was
    not current is left to be built on first use. The Rust index of the centroids is the
    caller's (it is keyed on the tensor before the write)."""
    old = getattr(owner, name)
    if old is None:
        return
    current = [(cache, dim, derive, cache.peek(old)) for cache, dim, derive in caches]
    if rows is None:
        value = reserve_along(old, extra)
        if value is old:
            return
    else:
        value = append_along(old, rows.to(old.device, old.dtype).reshape(-1, *old.shape[1:]))
    _replace(owner, name, value)
    new = getattr(owner, name)
    for cache, dim, derive, value in current:
        if value is None:
            continue
        if rows is None:
            cache.adopt(new, reserve_along(value, extra, dim=dim))
        else:
            added = derive(new.detach()[old.shape[0]:]).to(value.dtype)
            cache.adopt(new, append_along(value, added, dim=dim))


def append_class_rows(model: Any, rows: dict[str, Tensor]) -> None:
    """Append one class's rows to ``model``: ``rows`` maps keys of :func:`_tracked`
    (``"centroids"``, ``"weight"``, ``"bias"``, ``"cosine"``) to the new row (D,) or bias
    value (); a key left out is appended by a later call (enrollment appends the cosine row
    once the memory rows are in). Sets the class count from the centroids; the cached
    nearest-centroid index of an ``"oltr"`` classifier takes an edit."""
    for key, owner, name, caches in _tracked(model):
        if key not in rows:
            continue
        if key == "centroids" and model.stage == "oltr":
            old, old_key = model.centroids, source_key(model.centroids)
            _grow(owner, name, caches, rows[key])
            model.classifier.nearest.extend(old, model.centroids, old_key)
        else:
            _grow(owner, name, caches, rows[key])
    _set_num_classes(model, int(model.centroids.shape[0]))


def reserve_classes(model: Any, extra: int) -> None:
    """Room for ``extra`` more classes in every class-indexed tensor of ``model`` and in its
    current inference caches (one O(K·D) copy each now, none at the next ``extra``
    enrollments). Values, the index and the imprint statistics stay as they are."""
    stats = getattr(model, "_imprint_stats", None)
    if not isinstance(stats, ImprintStats):
        stats = None
    sums = None if stats is None else stats.get(_tensors(model))
    old_centroids, old_key = model.centroids, source_key(model.centroids)
    for _, owner, name, caches in _tracked(model):
        _grow(owner, name, caches, None, extra)
    if model.stage == "oltr":
        model.classifier.nearest.extend(old_centroids, model.centroids, old_key)
    if stats is not None and sums is not None:
        stats.put(_tensors(model), sums)


class ImprintStats:
    """Sums over a model's classes that the imprint rules average, float64: ``"hallucinator"``
    Σ‖w_k‖ of the hallucinator (``fc``) rows, ``"own"`` Σ (w_k·c_k + b_k) (each class's logit
    at its own memory centroid), ``"cosine"`` Σ‖v_k‖ of the cosine rows (``"oltr"`` stage),
    and ``"memory"`` whether any centroid is nonzero. Valid while the tensors they were taken
    from are unchanged (object, storage, version counter); :func:`imprint_stats` recomputes
    them (O(K·D)) otherwise and :func:`add_class_to_stats` updates them per enrolled class (O(D)). Copies and
    pickles start empty."""

    def __init__(self) -> None:
        self._entry: Optional[tuple[list, dict[str, Any]]] = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._entry = None

    def __deepcopy__(self, memo: dict) -> "ImprintStats":
        return ImprintStats()

    @staticmethod
    def _keys(tensors: Sequence[Optional[Tensor]]) -> list:
        return [None if t is None else (weakref.ref(t), weight_key(t)) for t in tensors]

    def get(self, tensors: Sequence[Optional[Tensor]]) -> Optional[dict[str, Any]]:
        if self._entry is None:
            return None
        keys, sums = self._entry
        for tensor, key in zip(tensors, keys):
            if (tensor is None) != (key is None):
                return None
            if tensor is not None and (key[0]() is not tensor or key[1] is None or key[1] != weight_key(tensor)):
                return None
        return sums

    def put(self, tensors: Sequence[Optional[Tensor]], sums: dict[str, Any]) -> None:
        self._entry = (self._keys(tensors), sums)


class _Tensors(NamedTuple):
    """The tensors :class:`ImprintStats` sums over."""

    memory: Tensor
    weight: Tensor
    bias: Optional[Tensor]
    cosine: Optional[Tensor]


def _tensors(model: Any) -> _Tensors:
    classifier = model.classifier
    layer = classifier.fc_hallucinator if model.stage == "oltr" else classifier.fc
    cosine = classifier.cosnorm_classifier.weight if model.stage == "oltr" else None
    return _Tensors(model.centroids, layer.weight, layer.bias, cosine)


def _row_norm_sum(weight: Tensor) -> float:
    return float(torch.linalg.vector_norm(weight.detach(), dim=1).double().sum())


def _own_logit_sum(memory: Tensor, weight: Tensor, bias: Optional[Tensor]) -> float:
    # each row's dot product in the tensors' dtype, row by row (no (K, D) temporary)
    own = torch.bmm(memory.detach().unsqueeze(1), weight.detach().to(memory.dtype).unsqueeze(2)).reshape(-1)
    return float(own.double().sum()) + (0.0 if bias is None else float(bias.detach().double().sum()))


def imprint_stats(model: Any) -> dict[str, Any]:
    """The :class:`ImprintStats` sums of ``model`` now (kept in ``model._imprint_stats``)."""
    stats = getattr(model, "_imprint_stats", None)
    if not isinstance(stats, ImprintStats):
        stats = model._imprint_stats = ImprintStats()
    tensors = _tensors(model)
    sums = stats.get(tensors)
    if sums is None:
        memory, weight, bias, cosine = tensors
        sums = {"hallucinator": _row_norm_sum(weight), "own": _own_logit_sum(memory, weight, bias),
                "memory": bool(torch.count_nonzero(memory)), "count": int(memory.shape[0]),
                "cosine": None if cosine is None else _row_norm_sum(cosine)}
        stats.put(tensors, sums)
    return sums


def add_class_to_stats(model: Any, sums: dict[str, Any]) -> None:
    """``sums`` (the stats before the last class was appended to every tensor) updated with
    that class's rows and stored for the grown tensors."""
    memory, weight, bias, cosine = tensors = _tensors(model)
    new = dict(sums)  # the new rows through the same helpers as the full sums
    new["hallucinator"] += _row_norm_sum(weight[-1:])
    new["own"] += _own_logit_sum(memory[-1:], weight[-1:], None if bias is None else bias[-1:])
    new["memory"] = sums["memory"] or bool(torch.count_nonzero(memory[-1]))
    new["count"] += 1
    if cosine is not None:
        new["cosine"] += _row_norm_sum(cosine[-1:])
    model._imprint_stats.put(tensors, new)
