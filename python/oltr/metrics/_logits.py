"""Row-chunked float64 passes over a logit matrix (bounded memory, torch kernels)."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np

__all__ = ["argmax_and_msp", "logit_chunks", "per_row"]

_CHUNK = 8192


def logit_chunks(logits: Any, chunk: int = _CHUNK) -> Iterator:
    """float64 CPU torch tensors of ``chunk`` rows of ``logits`` (N, K).

    Values are not checked here (a full ``isfinite`` pass costs as much as the work);
    callers check their per-row results, which NaN or +inf logits make non-finite.
    """
    import torch

    z: Union[torch.Tensor, np.ndarray]
    if isinstance(logits, torch.Tensor):
        z = logits.detach()
        if z.is_complex() or z.dtype == torch.bool:
            raise TypeError(f"logits must be real numbers, got {z.dtype}")
    else:
        z = np.asarray(logits)
        if np.iscomplexobj(z):
            raise TypeError(f"logits must be real, got {z.dtype} (the imaginary part would be dropped)")
        if z.size and (z.dtype == np.bool_ or not np.issubdtype(z.dtype, np.number)):
            raise TypeError(f"logits must be numeric, got {z.dtype}")
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"logits must be (N, K) with K >= 1, got shape {tuple(z.shape)}")
    for start in range(0, z.shape[0], chunk):
        part = z[start:start + chunk]
        yield part.to("cpu", torch.float64) if isinstance(part, torch.Tensor) else torch.tensor(
            part, dtype=torch.float64)


def per_row(logits: Any, fns: Sequence[Callable]) -> list[np.ndarray]:
    """``[fn(logits) for fn in fns]`` as float64 numpy ``(N,)``, computed chunk by chunk."""
    outs: list[list[np.ndarray]] = [[] for _ in fns]
    for part in logit_chunks(logits):
        for out, fn in zip(outs, fns):
            out.append(np.asarray(fn(part).numpy(), dtype=np.float64))
    return [np.concatenate(o) if o else np.zeros(0) for o in outs]


def argmax_and_msp(logits: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(argmax int64 (N,), max softmax float64 (N,))`` in float64."""
    import torch

    preds, msp = [], []
    for part in logit_chunks(logits):
        top, arg = part.max(dim=1)
        # 1 / sum exp(z - max): the softmax's largest entry, exact for ties (1/K)
        row_msp = 1.0 / torch.exp(part - top.unsqueeze(1)).sum(dim=1)
        if not bool(torch.isfinite(top).all() and torch.isfinite(row_msp).all()):
            raise ValueError("logits contain NaN or infinite values")
        msp.append(row_msp.numpy())
        preds.append(arg.numpy().astype(np.int64))
    if not preds:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(preds), np.concatenate(msp)
