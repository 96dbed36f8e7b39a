"""Tensors that grow along one dimension into spare room: appends cost O(rows), amortised.

Enrolling a class appends one row to each class-indexed tensor of a model (centroids,
hallucinator and cosine rows) and one row or column to each inference cache derived from them
(:mod:`oltr.nn._weight_cache`). ``torch.cat`` would copy all K rows every time (O(K·D): at
K = 1e5, D = 512 about 200 MB written per class over the model and its caches).
:func:`append_along` instead writes the new rows into a buffer with room to spare and returns
a view of its used part; when the room runs out the buffer is reallocated with a quarter more
room (one O(K·D) copy per ~K/4 appends).

* The view's values, shape, dtype and device are those of ``torch.cat([tensor, rows], dim)``;
  along ``dim = 0`` of a contiguous tensor the view is contiguous, along ``dim = 1`` its row
  stride is the buffer's capacity (torch.mm and BLAS take such strides).
* A view remembers its buffer (``_oltr_room``). Only the *latest* view of a buffer grows in
  place: a view whose length is not the buffer's used length (an older view, or the same
  tensor held by another model after a shallow copy) or whose storage is another one (a deep
  copy, ``.to()``) gets a buffer of its own, so an append never writes rows another tensor shows.
* ``torch.save`` of a view stores its whole buffer (room included): :func:`compact` gives a
  tensor without the room, and :func:`compact_state_dict_hook` does that for a module's
  state dict.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

__all__ = ["append_along", "compact", "compact_state_dict_hook", "has_room", "reserve_along"]

_MIN_ROOM = 16  # rows of room at least, whatever the length


class _Room:
    """A buffer, the dimension it grows along, and how much of it the latest view uses."""

    __slots__ = ("buffer", "dim", "used")

    def __init__(self, buffer: Tensor, dim: int, used: int) -> None:
        self.buffer, self.dim, self.used = buffer, dim, used

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copied view gets a buffer of its own on its first append


def _room_of(tensor: Tensor, dim: int) -> Optional[_Room]:
    """The room ``tensor`` may grow into in place, or None (see the module docstring)."""
    room = getattr(tensor, "_oltr_room", None)
    if not isinstance(room, _Room) or room.dim != dim:
        return None
    buffer = room.buffer
    same_layout = (tensor.data_ptr() == buffer.data_ptr() and tensor.stride() == buffer.stride()
                   and tensor.dtype == buffer.dtype and tensor.device == buffer.device)
    other_dims = all(tensor.shape[i] == buffer.shape[i] for i in range(buffer.dim()) if i != dim)
    if not (same_layout and other_dims and tensor.dim() == buffer.dim()) or tensor.shape[dim] != room.used:
        return None
    return room


def has_room(tensor: Tensor, rows: int = 1, dim: int = 0) -> bool:
    """Whether :func:`append_along` would append ``rows`` to ``tensor`` in place."""
    room = _room_of(tensor, dim)
    return room is not None and room.buffer.shape[dim] >= room.used + rows


def append_along(tensor: Tensor, rows: Tensor, dim: int = 0) -> Tensor:
    """``torch.cat([tensor, rows], dim)`` as a view of a buffer with room (module docstring).

    ``tensor`` and ``rows`` have the same dtype, device and sizes except along ``dim``. The
    result is a plain tensor (wrap it in ``nn.Parameter`` as needed and copy its
    ``_oltr_room`` over, as :func:`oltr.model.enrollment` does). No autograd: call it under
    ``torch.no_grad()`` when ``tensor`` requires grad.
    """
    length, extra = tensor.shape[dim], rows.shape[dim]
    room = _room_of(tensor, dim)
    if room is None or room.buffer.shape[dim] < length + extra:
        room = _copy_into_room(tensor, dim, length + extra + max(_MIN_ROOM, (length + extra) // 4))
    room.buffer.narrow(dim, length, extra).copy_(rows.detach())
    room.used = length + extra
    return _view(room)


def reserve_along(tensor: Tensor, extra: int, dim: int = 0) -> Tensor:
    """``tensor`` itself when :func:`append_along` can append ``extra`` rows to it in place,
    else a view of a new buffer with room for exactly that many (same values)."""
    if extra < 0:
        raise ValueError(f"extra must be >= 0, got {extra}")
    if has_room(tensor, extra, dim):
        return tensor
    return _view(_copy_into_room(tensor, dim, tensor.shape[dim] + extra))


def _copy_into_room(tensor: Tensor, dim: int, capacity: int) -> _Room:
    """A new buffer of ``capacity`` along ``dim`` whose first rows are ``tensor``."""
    shape = list(tensor.shape)
    shape[dim] = capacity
    buffer = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    buffer.narrow(dim, 0, tensor.shape[dim]).copy_(tensor.detach())
    return _Room(buffer, dim, tensor.shape[dim])


def _view(room: _Room) -> Tensor:
    """The used part of ``room``'s buffer, remembering the room (the latest view)."""
    view = room.buffer.narrow(room.dim, 0, room.used)
    view._oltr_room = room  # type: ignore[attr-defined]
    return view


def compact(tensor: Tensor) -> Tensor:
    """``tensor`` itself, or a compact clone when its storage holds more than its elements (a
    view of a buffer with room; ``torch.save`` would store the whole buffer)."""
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
        return tensor.detach().clone(memory_format=torch.contiguous_format)
    return tensor


def compact_state_dict_hook(module: Any, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    """A ``register_state_dict_post_hook`` hook: ``module``'s own parameters and buffers (not
    its children's) whose storage is larger than they are (views of a buffer with room) are
    replaced by compact clones, so a saved state dict holds no room; every other entry still
    aliases its tensor."""
    for name in (*module._parameters, *module._buffers):
        value = state_dict.get(prefix + name)
        if isinstance(value, Tensor):
            state_dict[prefix + name] = compact(value)
