"""The Rust core's engines: ``available_kernels()``, forcing one through ``kernel=``, and each
engine this CPU runs against the float64 oracle (adversarial cases, large k, the hypothesis
property test of ``test_memory_backends``)."""
from __future__ import annotations

import functools
import platform
from pathlib import Path

import numpy as np
import pytest

import test_memory_backends
from oltr.memory import CentroidIndex, available_kernels
from test_memory_support import adversarial_cases, assert_matches_oracle, require_backend

require_backend("rust")

#: Every engine the core knows, and the sets of CPU flags (``/proc/cpuinfo``) any of which
#: lets it run.
ENGINE_FLAGS = {
    "avx512-vnni-i8": [{"avx512f", "avx512_vnni"}],
    "avx512-bf16": [{"avx512f", "avx512_bf16"}],
    # AVX-VNNI (VEX), or the EVEX-256 form of AVX-512 VNNI + VL.
    "avx-vnni-i8": [{"avx2", "fma", "avx_vnni"}, {"avx2", "fma", "avx512_vnni", "avx512vl"}],
    "avx512-f32": [{"avx512f"}],
    "avx2-f32": [{"avx2", "fma"}],
    "portable-f32": [set()],
}
#: The int8 engines: an ``auto`` index over one runs another engine at large k.
INT8 = {"avx512-vnni-i8", "avx-vnni-i8"}
KERNELS = available_kernels()
CASES = adversarial_cases(seed=29)


def _cpu_flags() -> set[str] | None:
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_available_kernels_lists_what_the_cpu_runs():
    import oltr._core as core

    assert KERNELS == core.available_kernels()
    assert KERNELS and KERNELS[-1] == "portable-f32"
    assert len(set(KERNELS)) == len(KERNELS)
    assert set(KERNELS) <= set(ENGINE_FLAGS)
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this machine")
    expected = [name for name, needs in ENGINE_FLAGS.items() if any(need <= flags for need in needs)]
    assert sorted(KERNELS) == sorted(expected)
    if "avx512-vnni-i8" in KERNELS:
        # The 256-bit int8 engine (EVEX form here) never ranks ahead of the 512-bit one.
        assert KERNELS[0] == "avx512-vnni-i8" and KERNELS[-2:] == ["avx-vnni-i8", "portable-f32"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_engine_matches_the_oracle(kernel, case):
    _, c, x, k = case
    index = CentroidIndex(c, backend="rust", kernel=kernel)
    assert index.kernel == kernel and index.backend == "rust"
    dist, idx = index.search(x, k=k)
    assert_matches_oracle(dist, idx, x, c, k)
    dist_all, idx_all = index.search(x, k=c.shape[0])  # k = K
    assert_matches_oracle(dist_all, idx_all, x, c, c.shape[0])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("k", [1, 10, 100, 1000])
def test_every_engine_large_k_with_near_ties(kernel, k):
    """Many centroids whose distances differ by less than the candidate pass's error."""
    rng = np.random.default_rng(k)
    d = 67
    q = rng.standard_normal(d)
    dirs = rng.standard_normal((2000, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radius = 20.0 * (1.0 + 1e-6 * rng.integers(0, 50, size=(2000, 1)))
    c = (q + radius * dirs).astype(np.float32)
    x = np.concatenate([np.tile(q, (3, 1)), rng.standard_normal((5, d)) * 3.0]).astype(np.float32)
    dist, idx = CentroidIndex(c, backend="rust", kernel=kernel).search(x, k=k)
    assert_matches_oracle(dist, idx, x, c, k)


#: Bytes per value a one-query search streams, by engine.
STREAMED_BYTES = {"avx512-vnni-i8": 1, "avx-vnni-i8": 1, "avx512-bf16": 2, "avx512-f32": 2, "avx2-f32": 2,
                  "portable-f32": 4}


@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_nbytes_is_what_a_one_query_search_streams(kernel):
    import oltr._core as core

    for k_classes, d in ((64, 512), (100, 30)):
        c = np.ones((k_classes, d), dtype=np.float32)
        nbytes = core.CentroidIndex(c, kernel=kernel).packed_nbytes
        exact = STREAMED_BYTES[kernel] * k_classes * d
        # Panels pad K to 16 centroids and D to 2 (bf16) or 4 (int8) values.
        padded = STREAMED_BYTES[kernel] * (-(-k_classes // 16) * 16) * (-(-d // 4) * 4)
        assert nbytes == exact if (k_classes % 16 == 0 and d % 4 == 0) or kernel == "portable-f32" else (
            exact <= nbytes <= padded
        )


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("d", [1, 2, 3, 7, 130])
def test_every_engine_with_one_dominant_component(kernel, d):
    """One component near 100, the rest ~1e-3: quantised scores (int8 with a per-vector
    scale, bf16) lose the small components entirely, yet they decide the ranking."""
    rng = np.random.default_rng(d)
    c = 1e-3 * rng.standard_normal((400, d))
    c[:, 0] = 100.0 + 1e-6 * rng.integers(0, 3, size=400)
    x = 1e-3 * rng.standard_normal((9, d))
    x[:, 0] = 100.0
    c, x = c.astype(np.float32), x.astype(np.float32)
    index = CentroidIndex(c, backend="rust", kernel=kernel)
    for k in (1, 5, 400):
        dist, idx = index.search(x, k=k)
        assert_matches_oracle(dist, idx, x, c, k)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_engine_passes_the_property_test(kernel, monkeypatch):
    monkeypatch.setattr(
        test_memory_backends,
        "CentroidIndex",
        functools.partial(CentroidIndex, kernel=kernel),
    )
    test_memory_backends._check_any_shape_matches_oracle("rust")


def test_auto_runs_an_available_engine():
    c = np.eye(4, dtype=np.float32)
    for index in (CentroidIndex(c), CentroidIndex(c, backend="rust", kernel="auto")):
        assert index.backend == "rust" and index.kernel == KERNELS[0]
    # A forced engine implies the rust backend.
    assert CentroidIndex(c, kernel="portable-f32").backend == "rust"


@pytest.mark.parametrize("k", [1, 10, 100, 1000])
def test_auto_is_exact_at_every_k_and_names_the_engine_that_serves_it(k):
    """An ``auto`` index over an int8 engine runs the next non-int8 engine of the ranking for
    k >= max(ceil(sqrt(K) / 5), ceil(K / (100 B^2))) (K = 2500: k >= 10 for B >= 4, k >= 25 for
    one query); ``kernel`` stays the small-k engine."""
    import oltr._core as core

    rng = np.random.default_rng(k + 5)
    c = rng.standard_normal((2500, 96)).astype(np.float32)
    x = (c[rng.integers(0, 2500, size=40)] + 0.3 * rng.standard_normal((40, 96))).astype(np.float32)
    index = core.CentroidIndex(c, kernel="auto")
    assert index.kernel == KERNELS[0] == index.kernel_for(1, 40) == index.kernel_for(9, 40)
    large = [e for e in KERNELS if e not in INT8 | {"portable-f32"}]
    want = large[0] if KERNELS[0] in INT8 and large else KERNELS[0]
    assert index.kernel_for(k, 40) == (KERNELS[0] if k < 10 else want)
    assert index.kernel_for(k, 1) == (KERNELS[0] if k < 25 else want)
    for rows in (40, 1):
        dist, idx = index.search(x[:rows], k)
        assert_matches_oracle(dist, idx, x[:rows], c, k)
    for bad in (0, 2501):
        with pytest.raises(ValueError, match="k"):
            index.kernel_for(bad, 1)
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        index.kernel_for(1, 0)
    forced = core.CentroidIndex(c, kernel=KERNELS[-1])
    assert forced.kernel_for(k, 1) == forced.kernel_for(k, 40) == KERNELS[-1]


def test_unknown_engine_raises_naming_the_choices():
    c = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="kernel must be one of .*'auto'.*'portable-f32'.*got \"avx9\""):
        CentroidIndex(c, backend="rust", kernel="avx9")
    with pytest.raises(TypeError, match="kernel"):
        CentroidIndex(c, backend="rust", kernel=3)


@pytest.mark.parametrize("name", sorted(set(ENGINE_FLAGS) - {"portable-f32"}))
def test_engine_the_cpu_cannot_run_raises(name, monkeypatch):
    """OLTR_DISABLE_KERNELS emulates a CPU without the engine (a real one raises the same)."""
    c = np.eye(4, dtype=np.float32)
    monkeypatch.setenv("OLTR_DISABLE_KERNELS", f"{name}, unrelated")
    assert name not in available_kernels()
    assert available_kernels()[-1] == "portable-f32"
    message = f"kernel \"{name}\" cannot run on this CPU; this CPU runs 'auto', .*'portable-f32'"
    with pytest.raises(ValueError, match=message):
        CentroidIndex(c, backend="rust", kernel=name)
    assert CentroidIndex(c, backend="rust").kernel != name
    monkeypatch.delenv("OLTR_DISABLE_KERNELS")
    if name in KERNELS:
        assert CentroidIndex(c, backend="rust", kernel=name).kernel == name


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_kernel_is_rust_only(backend):
    c = np.eye(4, dtype=np.float32)
    if backend == "faiss":
        pytest.importorskip("faiss")
    with pytest.raises(ValueError, match="kernel is only valid with backend='rust'"):
        CentroidIndex(c, backend=backend, kernel="portable-f32")
    index = CentroidIndex(c, backend=backend, kernel="auto")
    assert index.kernel is None


def test_the_python_index_tells_which_engine_a_call_runs():
    import oltr

    c = np.random.default_rng(3).standard_normal((2000, 32)).astype(np.float32)
    index = oltr.CentroidIndex(c, backend="rust")
    core = index._impl._index
    for k, batch in ((1, 1), (10, 64), (100, 64), (1000, 1)):
        assert index.kernel_for(k, batch) == core.kernel_for(k, batch)
        assert index.kernel_for(k, batch) in oltr.memory.available_kernels()
    assert oltr.CentroidIndex(c, backend="torch").kernel_for(5) is None
    with pytest.raises(ValueError):
        index.kernel_for(0, 1)
