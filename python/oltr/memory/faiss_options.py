"""``FaissOptions``: which FAISS index the ``"faiss"`` backend builds (exact or approximate).

Kept apart from the backend so that ``import oltr.memory`` loads neither FAISS nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ._validation import check_int

__all__ = ["FaissOptions"]


@dataclass(frozen=True)
class FaissOptions:
    """How the ``"faiss"`` backend indexes the centroids.

    index: ``"flat"`` (exact ``IndexFlatL2``, the default), ``"hnsw"`` (``IndexHNSWFlat``) or
        ``"ivf"`` (``IndexIVFFlat`` over a flat quantizer, trained on the centroids).
    hnsw_m: HNSW graph degree M. ef_construction / ef_search: HNSW beam widths at build and
        at query time (larger = better recall, slower).
    nlist: IVF cells (default ``round(4·√K)``, at most K / 39). nprobe: IVF cells visited per query.
    extra_candidates: neighbours fetched beyond k and re-ranked exactly.
    """

    index: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: Optional[int] = None
    nprobe: int = 16
    extra_candidates: int = 16

    def __post_init__(self) -> None:
        if self.index not in ("flat", "hnsw", "ivf"):
            raise ValueError(
                f"FaissOptions.index must be 'flat', 'hnsw' or 'ivf', got {self.index!r}"
            )
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "extra_candidates"):
            check_int(getattr(self, name), f"FaissOptions.{name}",
                      0 if name == "extra_candidates" else 1)
        if self.nlist is not None:
            check_int(self.nlist, "FaissOptions.nlist", 1)

    @property
    def exact(self) -> bool:
        """True for the exact flat index."""
        return self.index == "flat"
