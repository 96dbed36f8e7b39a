"""Shared fixtures: where the reference material lives, seeded generators."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    """``../shared`` beside the checkout (CI lays a copy there); ``OLTR_SHARED`` overrides."""
    return Path(os.environ.get("OLTR_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the golden vectors produced by the official OLTR modules.

    Missing material fails under CI (it must be there) and skips elsewhere.
    """
    path = _shared_dir() / "golden"
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"golden vectors not found at {path}")
        pytest.skip(f"golden vectors not found at {path} (set OLTR_SHARED)")
    return path


@pytest.fixture(scope="session")
def golden(golden_dir):
    """``golden("meta_embedding")`` -> dict of numpy arrays from ``meta_embedding.npz``."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def load(name: str) -> dict[str, np.ndarray]:
        if name not in cache:
            with np.load(golden_dir / f"{name}.npz") as f:
                cache[name] = {k: f[k] for k in f.files}
        return cache[name]

    return load


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    """Every device test runs on the CPU, and again on CUDA when a GPU is present."""
    if request.param == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    return request.param


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cuda: the CUDA variant of a device-parametrised test")
