"""numpy ⇄ torch at the boundary of the score functions: the output type follows the input."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_float_tensor", "checked_output", "like_input", "real_input"]


def real_input(value: Any, name: str) -> Any:
    """``value`` as a tensor (unchanged) or a numpy array (``np.asarray``, no copy of an array);
    ``TypeError`` naming ``name`` when it is complex (its imaginary part would be dropped)."""
    from oltr.memory._validation import dtype_error

    out = value if isinstance(value, torch.Tensor) else np.asarray(value)
    if out.is_complex() if isinstance(out, torch.Tensor) else np.iscomplexobj(out):
        raise dtype_error(name, out.dtype)
    return out


def as_float_tensor(
    value: Any, name: str, ndim: int, check_finite: bool = True
) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``; floats stay float32/float64, other real dtypes → float32,
    complex raises ``TypeError``.

    ``check_finite=False`` skips the full NaN/inf scan; the caller then checks its
    per-row result with :func:`checked_output`."""
    was_numpy = not isinstance(value, torch.Tensor)
    value = real_input(value, name)
    t = torch.tensor(value) if was_numpy else value.detach()  # copy: read-only ok
    if t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if check_finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t, was_numpy


def checked_output(value: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` if finite; else ``ValueError`` blaming the input ``name``."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def like_input(value: torch.Tensor, was_numpy: bool):
    """Back to numpy when the input was not a tensor."""
    return value.cpu().numpy() if was_numpy else value
