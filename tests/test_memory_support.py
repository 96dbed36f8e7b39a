"""Helpers shared by the memory tests: the float64 oracle, backend availability, data sets.

(No tests here; the ``test_memory_*`` files import it.)
"""
from __future__ import annotations

import os

import numpy as np
import pytest

__all__ = [
    "EXACT_BACKENDS",
    "adversarial_cases",
    "assert_matches_oracle",
    "oracle_distances",
    "require_backend",
]

EXACT_BACKENDS = ("torch", "faiss", "rust")
RTOL = 1e-5
ATOL = 1e-7


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_backend(name: str) -> None:
    """Skip a rust test when ``oltr._core`` is missing, except under CI, where it fails."""
    if name != "rust":
        return
    try:
        import oltr._core  # noqa: F401
    except ImportError as err:
        if _under_ci():
            pytest.fail(f"CI is set but oltr._core cannot be imported: {err}")
        pytest.skip("oltr._core is not built (run `make install`)")


def oracle_distances(x, centroids) -> np.ndarray:
    """float64 (B, K) exact L2 distances of the float32-rounded inputs."""
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    c64 = np.asarray(centroids, dtype=np.float32).astype(np.float64)
    return np.sqrt(((x64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2))


def assert_matches_oracle(dist, idx, x, centroids, k: int) -> None:
    """Check a (dist, idx) answer against the float64 oracle.

    * shapes (B, k), dtypes float32 / int64, distances ascending, indices distinct;
    * each returned distance equals the oracle distance of its returned index (rel 1e-5);
    * the j-th returned distance equals the oracle's j-th smallest (so the set is right up to
      near-ties);
    * tie rule: among centroids at exactly the same float64 distance, the lower index comes
      first and is selected first.
    """
    dist = np.asarray(dist)
    idx = np.asarray(idx)
    ref = oracle_distances(x, centroids)
    b = ref.shape[0]
    assert dist.shape == (b, k) and idx.shape == (b, k)
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    if b == 0:
        return
    assert np.all(np.diff(dist, axis=1) >= 0), "distances not ascending"
    assert np.all((idx >= 0) & (idx < ref.shape[1]))
    assert all(len(set(row)) == k for row in idx.tolist()), "duplicate indices in a row"
    at_idx = np.take_along_axis(ref, idx, axis=1)
    np.testing.assert_allclose(dist, at_idx, rtol=RTOL, atol=ATOL)
    ref_sorted = np.sort(ref, axis=1)[:, :k]
    np.testing.assert_allclose(dist, ref_sorted, rtol=RTOL, atol=ATOL)
    for row in range(b):
        chosen = idx[row]
        selected = np.zeros(ref.shape[1], dtype=bool)
        selected[chosen] = True
        for j, c in enumerate(chosen):
            tied = np.flatnonzero(ref[row] == ref[row, c])
            # unselected tied centroids must have a higher index
            assert np.all(tied[~selected[tied]] > c), f"row {row}: tie not broken by lower index"
            if j + 1 < k and ref[row, chosen[j + 1]] == ref[row, c]:
                assert chosen[j + 1] > c, f"row {row}: equal distances not in index order"


def _unit_rows(rng, n, d):
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def adversarial_cases(seed: int = 7):
    """(name, centroids float32 (K, D), queries float32 (B, D), k) for the oracle tests."""
    rng = np.random.default_rng(seed)
    cases = []
    c = rng.standard_normal((200, 37)).astype(np.float32)
    x = rng.standard_normal((33, 37)).astype(np.float32)
    cases.append(("random", c, x, 5))

    c = rng.standard_normal((60, 24)).astype(np.float32)
    c[10:40] = c[3]  # 31 copies of centroid 3: more than FAISS's extra candidates
    x = np.concatenate([c[3:4] + 0.01 * rng.standard_normal((24, 24)), rng.standard_normal((8, 24))])
    cases.append(("duplicate centroids", c, x.astype(np.float32), 3))

    d = 16
    c = np.concatenate([np.eye(d), -np.eye(d)]).astype(np.float32) * 2.0
    x = np.zeros((25, d), dtype=np.float32)  # every centroid at distance exactly 2
    cases.append(("exact ties", c, x, 4))

    d = 512
    c = (25.0 * _unit_rows(rng, 300, d)).astype(np.float32)
    on = c[:20].copy()  # queries equal to centroids: distance 0
    near = (c[20:60] + 1e-3 * _unit_rows(rng, 40, d)).astype(np.float32)
    cases.append(("on and near centroids of norm 25", c, np.concatenate([on, near]), 2))

    c = (1e3 + rng.standard_normal((150, 40))).astype(np.float32)  # large common offset
    x = (1e3 + rng.standard_normal((30, 40))).astype(np.float32)
    cases.append(("large norms", c, x, 3))

    c = (1e4 * rng.standard_normal((50, 19))).astype(np.float32)
    x = (c[:21] + rng.standard_normal((21, 19))).astype(np.float32)
    cases.append(("huge scale", c, x, 2))

    c = rng.standard_normal((40, 13)).astype(np.float32)
    cases.append(("B=1", c, rng.standard_normal((1, 13)).astype(np.float32), 3))
    cases.append(("K=1", c[:1].copy(), rng.standard_normal((22, 13)).astype(np.float32), 1))
    cases.append(("k=K", c[:9].copy(), rng.standard_normal((22, 13)).astype(np.float32), 9))

    c = rng.standard_normal((30, 1)).astype(np.float32)
    cases.append(("D=1", c, rng.standard_normal((27, 1)).astype(np.float32), 4))
    c = rng.standard_normal((100, 515)).astype(np.float32)
    cases.append(("D=515", c, rng.standard_normal((21, 515)).astype(np.float32), 2))
    return cases
