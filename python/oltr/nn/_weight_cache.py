"""A value derived from one parameter (e.g. its row-normalised copy), kept for inference.

:class:`DerivedCache` recomputes ``build(weight)`` only when ``weight`` changed. The key is
the tensor object itself plus its data pointer, version counter, dtype, device, shape and
strides, so these changes are seen:

* in-place updates through autograd-visible ops, which bump the version counter: an
  optimizer step, ``load_state_dict`` (``copy_``), ``with torch.no_grad(): w.mul_(2)``;
* ``w.data = other`` swaps, ``module.to(device)`` / ``.double()`` (new storage);
* ``load_state_dict(..., assign=True)`` and any other replacement of the Parameter object.

The entry holds an alias of the weight it was built from, so that storage (and its address)
stays alive and a later tensor cannot reuse the address. Writes that bypass the version
counter -- in place through ``w.data`` or through a numpy view of the weight -- are not seen:
call :meth:`DerivedCache.clear` after them. Copies and pickles drop the entry (it is rebuilt on
first use). Inference tensors (made under ``torch.inference_mode``) have no version counter:
their values are built on every call, never cached.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

__all__ = ["DerivedCache", "weight_key"]


def weight_key(weight: Tensor) -> Optional[tuple]:
    """The state of ``weight`` a value derived from it is valid for (see the module
    docstring): data pointer, version counter, dtype, device, shape, strides; None for an
    inference tensor (no version counter: nothing to key on)."""
    try:
        version = weight._version
    except RuntimeError:
        return None
    return (weight.data_ptr(), version, weight.dtype, weight.device, tuple(weight.shape), weight.stride())


class DerivedCache:
    """Caches ``build(weight.detach())`` while ``weight`` is unchanged (see the module docstring).

    ``builds`` counts how many values were built (for tests and diagnostics).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget the cached value."""
        self._entry: Optional[tuple] = None
        self.builds = 0

    def __getstate__(self) -> dict:
        return {"cached": False}  # not empty: an empty state would skip __setstate__

    def __setstate__(self, state: dict) -> None:
        self.clear()

    def peek(self, weight: Tensor) -> Any:
        """The cached value when it was built from ``weight`` as ``weight`` is now, else None
        (builds nothing)."""
        entry = self._entry
        if entry is None or entry[0] is not weight:
            return None
        key = weight_key(weight)
        return entry[3] if key is not None and entry[1] == key else None

    def adopt(self, weight: Tensor, value: Any) -> None:
        """Make ``value`` the cached value of ``weight`` as ``weight`` is now, without building:
        for a caller that derived it from an earlier value, such as enrollment appending a
        class's row to both a weight and its cached normalised copy (``value`` must equal
        ``build(weight)``)."""
        key = weight_key(weight)
        self._entry = None if key is None else (weight, key, weight.detach(), value)

    def get(self, weight: Tensor, build: Callable[[Tensor], Any]) -> Any:
        """``build(weight.detach())``, computed without autograd, from the cache when valid."""
        key = weight_key(weight)
        if key is None:
            with torch.no_grad():
                return build(weight.detach())
        entry = self._entry  # one read: other threads may replace it meanwhile
        if entry is not None and entry[0] is weight and entry[1] == key:
            return entry[3]
        with torch.no_grad():
            value = build(weight.detach())
        self._entry = (weight, key, weight.detach(), value)
        self.builds += 1
        return value
