"""Shared fixtures: the golden vectors, seeded generators, the device parameter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


#: Golden vectors produced by running the official OLTR modules (data, kept in the repository
#: so every clone runs the golden tests; tests/golden/README.md says what each file holds).
GOLDEN_DIR = REPO_ROOT / "tests" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the golden vectors produced by the official OLTR modules."""
    assert GOLDEN_DIR.is_dir(), f"golden vectors missing from the checkout: {GOLDEN_DIR}"
    return GOLDEN_DIR


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
