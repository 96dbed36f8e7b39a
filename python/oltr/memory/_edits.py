"""Edits of a :class:`~oltr.memory.CentroidIndex` without rebuilding it (LSM-style).

An edited index is three parts, for every backend alike (the backends themselves never change):

* **main**: the backend built last (at construction or at the last compaction) over M
  centroids, whose ids ascend with their rows;
* **delta**: the centroids added (or updated) since, keyed by id, searched through a second,
  small backend of the same kind that is rebuilt, in id order, on the first search after a
  change (an add itself only stores the row: O(D));
* **tombstones**: the main rows removed (or updated) since.

``search(x, k)`` asks main for its ``k + (tombstones)`` nearest and delta for its k nearest,
drops tombstoned rows, and merges by (distance, id). Candidates whose float32 distances tie
are ordered by their float64 distance first (what every backend ranks by), then by the lower
id, so the answer equals that of an index built from scratch on the live centroids in id
order, with row numbers replaced by ids.

Compaction: when ``tombstones + delta`` exceeds ``max(COMPACT_MIN, COMPACT_FRACTION * K)``
(K = live centroids) the live centroids are rebuilt into a new main, in id order, and
delta and tombstones are emptied; one rebuild per K / 16 edits keeps the amortised cost of an
edit O(D · 16) plus the backend's build cost per centroid.

Ids: a fresh index's ids are its rows 0..K-1; ``add`` gives ``max id ever issued + 1, ...``;
a removed id is never issued again; ``update`` keeps the id.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np
import torch

from ._exact import pair_distances

__all__ = ["COMPACT_FRACTION", "COMPACT_MIN", "IndexEdits", "check_ids"]

#: Compaction starts when tombstones + delta exceed ``max(COMPACT_MIN, COMPACT_FRACTION * K)``.
COMPACT_FRACTION = 1.0 / 16.0
#: See :data:`COMPACT_FRACTION`: small indexes compact after this many pending edits.
COMPACT_MIN = 16

_F32_MAX = float(np.finfo(np.float32).max)


def check_ids(ids: Any, name: str = "ids") -> np.ndarray:
    """``ids`` (an int, a sequence of ints, an integer numpy array or torch tensor) as a 1-D
    int64 array without duplicates. TypeError for non-integers (bool and float included),
    ValueError for an empty, multi-dimensional or duplicated one; each message names ``name``."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be integers, got dtype {ids.dtype}")
        array = ids.detach().cpu().numpy()
    else:
        if isinstance(ids, (bool, np.bool_)):
            raise TypeError(f"{name} must be integers, got {ids!r}")
        try:
            array = np.asarray([operator.index(ids)]) if np.ndim(ids) == 0 else np.asarray(ids)
        except TypeError:
            raise TypeError(f"{name} must be integers, got {ids!r}") from None
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one id or a 1-D sequence of ids, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: give at least one id")
    array = array.astype(np.int64)
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} contains duplicates: {unique[counts > 1][:10].tolist()}")
    return array


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


class IndexEdits:
    """The edit state of one index (see the module docstring).

    Args:
        build: ``build(centroids tensor (n, D), main) -> backend``; ``main`` False builds the
            delta's backend (the exact flat kind for FAISS).
        main_impl: the backend built at construction; main_centroids: its centroids as a
            float32 tensor (a view of the numpy snapshot for the numpy backends).
        kind: the backend's array kind ("numpy" or "torch").
    """

    def __init__(self, build: Callable[[torch.Tensor, bool], Any], main_impl: Any,
                 main_centroids: torch.Tensor, kind: str) -> None:
        self._build = build
        self._kind = kind
        self._main_impl = main_impl
        self._main_c = main_centroids
        count = int(main_centroids.shape[0])
        self._main_ids = np.arange(count, dtype=np.int64)
        self._main_dead = np.zeros(count, dtype=bool)
        self._num_dead = 0
        self._delta: dict[int, torch.Tensor] = {}  # id -> (D,) row, private
        self._delta_impl: Any = None
        self._delta_ids = np.zeros(0, dtype=np.int64)
        self._delta_c: Any = None
        self._next_id = count
        self.compactions = 0  # for tests and diagnostics

    # -- bookkeeping -----------------------------------------------------------------------
    @property
    def main_impl(self) -> Any:
        """The backend of the built part (replaced by each compaction)."""
        return self._main_impl

    @property
    def main_centroids(self) -> torch.Tensor:
        """The built part's centroids, float32 (M, D) tensor."""
        return self._main_c

    @property
    def num_classes(self) -> int:
        return int(self._main_ids.shape[0]) - self._num_dead + len(self._delta)

    @property
    def ids(self) -> np.ndarray:
        """The live ids, ascending, int64 (K,)."""
        main = self._main_ids[~self._main_dead] if self._num_dead else self._main_ids
        if not self._delta:
            return main.copy()
        return np.union1d(main, np.fromiter(self._delta, dtype=np.int64, count=len(self._delta)))

    def _main_slots(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, live in main) of ``ids``."""
        slots = np.searchsorted(self._main_ids, ids)
        inside = slots < self._main_ids.shape[0]
        found = np.zeros(ids.shape, dtype=bool)
        found[inside] = self._main_ids[slots[inside]] == ids[inside]
        found[found] = ~self._main_dead[slots[found]]
        return slots, found

    def _check_live(self, ids: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        slots, in_main = self._main_slots(ids)
        in_delta = np.fromiter((int(i) in self._delta for i in ids), dtype=bool, count=ids.shape[0])
        unknown = ids[~(in_main | in_delta)]
        if unknown.size:
            raise ValueError(f"{name} contains unknown or removed id(s) {unknown[:10].tolist()} "
                             f"(the index holds {self.num_classes} live ids)")
        return slots, in_main

    # -- edits -----------------------------------------------------------------------------
    def add(self, rows: torch.Tensor) -> np.ndarray:
        """Store ``rows`` (n, D), a private float32 copy, under new ids; returns them."""
        ids = np.arange(self._next_id, self._next_id + rows.shape[0], dtype=np.int64)
        for i, row in zip(ids.tolist(), rows):
            self._delta[i] = row
        self._next_id += rows.shape[0]
        self._changed()
        return ids

    def remove(self, ids: np.ndarray, name: str = "ids") -> None:
        slots, in_main = self._check_live(ids, name)
        if ids.shape[0] >= self.num_classes:
            raise ValueError(f"{name} would remove every centroid: an index keeps at least one (K >= 1)")
        self._main_dead[slots[in_main]] = True
        self._num_dead += int(in_main.sum())
        for i in ids[~in_main].tolist():
            del self._delta[i]
        self._changed()

    def update(self, ids: np.ndarray, rows: torch.Tensor, name: str = "ids") -> None:
        if ids.shape[0] != rows.shape[0]:
            raise ValueError(f"{name} has {ids.shape[0]} id(s) but centroids has {rows.shape[0]} row(s)")
        slots, in_main = self._check_live(ids, name)
        self._main_dead[slots[in_main]] = True
        self._num_dead += int(in_main.sum())
        for i, row in zip(ids.tolist(), rows):
            self._delta[i] = row
        self._changed()

    def _changed(self) -> None:
        self._delta_impl = None
        pending = self._num_dead + len(self._delta)
        if pending > max(COMPACT_MIN, COMPACT_FRACTION * self.num_classes):
            self.compact()

    def _live(self) -> tuple[np.ndarray, torch.Tensor]:
        """(ids ascending, centroids (K, D) in that order)."""
        keep = ~self._main_dead
        ids, rows = self._main_ids, self._main_c
        if self._num_dead:
            ids = ids[keep]
            rows = rows.index_select(0, torch.from_numpy(np.flatnonzero(keep)).to(rows.device))
        if self._delta:
            delta_ids, delta_c = self._delta_part()
            ids = np.concatenate([ids, delta_ids])
            rows = torch.cat([rows, delta_c])
            order = np.argsort(ids, kind="stable")
            ids = ids[order]
            rows = rows.index_select(0, torch.from_numpy(order).to(rows.device))
        return ids, rows

    def compact(self) -> None:
        """Rebuild main over the live centroids (in id order); empty delta and tombstones."""
        ids, rows = self._live()
        self._main_impl = self._build(rows.contiguous(), True)
        self._main_c, self._main_ids = rows, ids
        self._main_dead = np.zeros(ids.shape[0], dtype=bool)
        self._num_dead = 0
        self._delta.clear()
        self._delta_impl = None
        self.compactions += 1

    def _delta_part(self) -> tuple[np.ndarray, torch.Tensor]:
        ids = np.fromiter(sorted(self._delta), dtype=np.int64, count=len(self._delta))
        return ids, torch.stack([self._delta[i] for i in ids.tolist()])

    def _delta_backend(self):
        if self._delta_impl is None:
            self._delta_ids, self._delta_c = self._delta_part()
            self._delta_impl = self._build(self._delta_c, False)
        return self._delta_impl

    # -- queries ---------------------------------------------------------------------------
    def search(self, x: Any, k: int, *, winner_float64: bool = False):
        """x: prepared queries (B, D) of the backend's kind, B >= 1; 1 <= k <= K.

        Returns ``(dist (B, k) float32, ids (B, k) int64)`` of the backend's kind, and with
        ``winner_float64`` also the float64 numpy distance of each row's nearest (B,)."""
        parts = []  # (dist, slots, ids of the slots, dead of the slots or None, centroids)
        main_live = self._main_ids.shape[0] - self._num_dead
        if main_live:
            fetch = min(self._main_ids.shape[0], k + self._num_dead)
            d, s = self._main_impl.search(x, fetch)
            parts.append((d, s, self._main_ids, self._main_dead if self._num_dead else None, self._main_c))
        if self._delta:
            impl = self._delta_backend()
            d, s = impl.search(x, min(k, self._delta_ids.shape[0]))
            parts.append((d, s, self._delta_ids, None, self._delta_c))
        if len(parts) == 1 and parts[0][3] is None and not winner_float64:
            d, s, id_of = parts[0][:3]
            s_np = _as_numpy(s)
            ids = id_of[s_np] if id_of.shape[0] and id_of[-1] != id_of.shape[0] - 1 else s_np
            return d, self._wrap_ids(ids, d)
        return self._merge(x, k, parts, winner_float64)

    def _wrap_ids(self, ids: np.ndarray, like: Any):
        if isinstance(like, torch.Tensor):
            return torch.from_numpy(np.ascontiguousarray(ids)).to(like.device)
        return np.ascontiguousarray(ids)

    def _merge(self, x: Any, k: int, parts: list, winner_float64: bool):
        dist = np.concatenate([_as_numpy(p[0]) for p in parts], axis=1)
        slots = [_as_numpy(p[1]) for p in parts]
        ids = np.concatenate([p[2][s] for p, s in zip(parts, slots)], axis=1)
        dead = np.concatenate([p[3][s] if p[3] is not None else np.zeros(s.shape, dtype=bool)
                               for p, s in zip(parts, slots)], axis=1)
        order = np.lexsort((ids, dist, dead), axis=-1)
        top = min(k + 1, order.shape[1])
        sorted_d = np.take_along_axis(dist, order[:, :top], axis=1)
        sorted_dead = np.take_along_axis(dead, order[:, :top], axis=1)
        ties = ((sorted_d[:, 1:] == sorted_d[:, :-1]) & ~sorted_dead[:, 1:]).any(axis=1)
        rows = np.flatnonzero(ties) if not winner_float64 else np.arange(dist.shape[0])
        d64 = None
        if rows.size:
            d64 = self._float64_distances(x, rows, parts, slots)
            order[rows] = np.lexsort((ids[rows], d64, dist[rows], dead[rows]), axis=-1)
        take = order[:, :k]
        out_ids = np.take_along_axis(ids, take, axis=1)
        first = parts[0][0]
        out_d: Any
        if isinstance(first, torch.Tensor):
            all_d = torch.cat([p[0] for p in parts], dim=1) if len(parts) > 1 else first
            out_d = all_d.gather(1, torch.from_numpy(take).to(all_d.device))
        else:
            out_d = np.take_along_axis(dist, take, axis=1)
        result = (out_d, self._wrap_ids(out_ids, first))
        if winner_float64:
            assert d64 is not None
            return (*result, np.take_along_axis(d64, take[:, :1], axis=1)[:, 0])
        return result

    def _float64_distances(self, x: Any, rows: np.ndarray, parts: list, slots: list) -> np.ndarray:
        """Exact float64 distances of every candidate of ``rows`` (len(rows), n candidates)."""
        xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
        out = []
        for part, s in zip(parts, slots):
            cand = s[rows]
            centroids = part[4]
            r = torch.from_numpy(np.repeat(rows, cand.shape[1])).to(xt.device)
            c = torch.from_numpy(cand.reshape(-1)).to(xt.device)
            with torch.no_grad():
                d = pair_distances(xt.detach(), centroids.detach().to(xt.dtype), r, c)
            out.append(d.cpu().numpy().reshape(cand.shape))
        return np.concatenate(out, axis=1)

    def reachability(self, x: Any, scale: float, eps: float, float64_formula: bool):
        """float32 (B,) ``scale / max(d_min, eps)``; ``float64_formula`` computes it from the
        float64 distance (as the Rust core does), else from the float32 one."""
        if float64_formula:
            _, _, d64 = self.search(x, 1, winner_float64=True)
            with np.errstate(over="ignore"):
                reach = (scale / np.maximum(d64, eps)).astype(np.float32)
            return np.minimum(reach, np.float32(_F32_MAX))
        d_min = self.search(x, 1)[0][:, 0]
        return scale / d_min.clip(min=eps)
