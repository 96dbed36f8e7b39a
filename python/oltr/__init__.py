"""oltr — Open Long-Tailed Recognition (Liu et al., CVPR 2019) for PyTorch.

Map of the package:

* ``oltr.memory``   — nearest-centroid search and reachability (Rust core, FAISS, torch).
* ``oltr.nn``       — modules: cosine classifier, meta-embedding classifier, modulated
  attention, discriminative centroid loss, backbones.
* ``oltr.model``    — :class:`OLTRModel` and :func:`compute_centroids` (the memory).
* ``oltr.checkpoint`` — read / load / save checkpoints of the official implementation.
* ``oltr.data``     — list-file datasets, long-tailed and open-set split builders, samplers.
* ``oltr.datasets`` — embedded real data (Fashion-MNIST-LT, digits-LT).
* ``oltr.train``    — the two-stage trainer and its configs.
* ``oltr.metrics``  — closed-set, official open-set and modern open-set metrics.
* ``oltr.scores``   — open-set scores (MSP, MaxLogit, energy, reachability).
* ``oltr.inference`` — the one inference path: :class:`Predictor` (checkpoint → labels, unknowns
  flagged), outputs → scores → decisions → the report of ``oltr eval``.
* ``oltr.longtail`` — long-tail corrections: logit adjustment, Balanced Softmax, τ-normalisation.
* ``oltr.cli``      — the ``oltr`` command.

Heavy submodules (torch) are imported lazily so ``import oltr`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "CentroidIndex": "oltr.memory",
    "nearest_centroids": "oltr.memory",
    "reachability": "oltr.memory",
    "set_num_threads": "oltr.memory",
    "get_num_threads": "oltr.memory",
    "NotFittedError": "oltr.errors",
    "OLTRModel": "oltr.model",
    "compute_centroids": "oltr.model",
    "Predictor": "oltr.inference",
    "Prediction": "oltr.inference",
}
_SUBMODULES = {
    "memory", "nn", "model", "checkpoint", "data", "datasets", "train", "metrics",
    "scores", "plots", "cli", "errors", "longtail",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"oltr.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'oltr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
