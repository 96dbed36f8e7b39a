"""oltr._core.matmul: argument validation, strided views, and batch-invariant bits."""
from __future__ import annotations

import numpy as np
import pytest

from oltr import _core

F32_KERNELS = [k for k in _core.available_kernels() if k in ("avx512-f32", "avx2-f32", "portable-f32")]


@pytest.fixture
def threads():
    """Restores the core's thread count after a test that changes it."""
    saved = _core.get_num_threads()
    yield
    _core.set_num_threads(saved)


def operands(rng, m, k, n):
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    return a, b, bias


def product(a, b, bias=None, **kw):
    out = np.full((a.shape[0], b.shape[1]), np.nan, np.float32)
    _core.matmul(a, b, out, bias, **kw)
    return out


def fma_f32(x, y, z):
    """Correctly rounded float32 fma(x, y, z), elementwise: x·y is exact in float64; TwoSum
    gives s + e = x·y + z exactly; s rounds to float32 like s + e except when s lies halfway
    between two float32 values, where the sign of e decides."""
    p = x.astype(np.float64) * y.astype(np.float64)
    z = z.astype(np.float64)
    s = p + z
    bb = s - p
    e = (p - (s - bb)) + (z - bb)
    r = s.astype(np.float32)
    toward = np.nextafter(r, np.where(s > r, np.float32(np.inf), np.float32(-np.inf)))
    halfway = (s != r) & (s == (r.astype(np.float64) + toward.astype(np.float64)) / 2)
    up = np.maximum(r, toward)
    down = np.minimum(r, toward)
    fix = halfway & (e != 0)
    return np.where(fix, np.where(e > 0, up, down), r).astype(np.float32)


def fma_reference(a, b, bias=None):
    """The contract's loop: acc = 0; acc = fma(a[i, k], b[k, j], acc) for k in order; + bias."""
    m, k = a.shape
    acc = np.zeros((m, b.shape[1]), np.float32)
    for i in range(k):
        acc = fma_f32(a[:, i:i + 1], b[i:i + 1], acc)
    return acc if bias is None else acc + bias


def test_fma_reference_and_the_kernels_round_once():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 lies halfway between two float32 values; adding 2^-70
    # first (the fused operation keeps it) puts it just above: fma rounds up, while a rounded
    # product (ties to even: down) plus 2^-70 stays at 1 + 2^-11.
    t, tiny = np.float32(1 + 2.0**-12), np.float32(2.0**-35)
    up, even = np.float32(1 + 2.0**-11 + 2.0**-23), np.float32(1 + 2.0**-11)
    assert fma_f32(np.array([t]), np.array([t]), np.array([tiny * tiny]))[0] == up
    assert fma_f32(np.array([t]), np.array([t]), np.array([np.float32(0)]))[0] == even
    a = np.array([[tiny, t]], np.float32)
    for kernel in F32_KERNELS:
        out = product(a, a.T.copy(), kernel=kernel)
        assert out[0, 0] == up, kernel
        np.testing.assert_array_equal(out, fma_reference(a, a.T.copy()))


def test_f32_kernels_are_listed():
    assert "portable-f32" in F32_KERNELS
    assert F32_KERNELS == [k for k in ("avx512-f32", "avx2-f32", "portable-f32") if k in F32_KERNELS]


@pytest.mark.parametrize("kernel", F32_KERNELS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 70), (13, 300, 129), (70, 520, 65)])
def test_agrees_with_float64_and_the_fma_loop(rng, kernel, m, k, n):
    a, b, bias = operands(rng, m, k, n)
    for bias_arg in (None, bias):
        got = product(a, b, bias_arg, kernel=kernel)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        if bias_arg is not None:
            exact += bias
        bound = k * 2.0**-23 * (np.abs(a).astype(np.float64) @ np.abs(b)) + 2.0**-23 * np.abs(exact)
        assert np.all(np.abs(got - exact) <= bound)
        np.testing.assert_array_equal(got, fma_reference(a, b, bias_arg))


def test_bits_do_not_depend_on_batch_rows_threads_or_kernel(rng, threads):
    a, b, bias = operands(rng, 300, 530, 1100)
    _core.set_num_threads(1)
    want = product(a, b, bias, kernel=F32_KERNELS[0])
    for n_threads in (1, 2, 3):
        _core.set_num_threads(n_threads)
        for kernel in F32_KERNELS:
            np.testing.assert_array_equal(product(a, b, bias, kernel=kernel), want)
            for r0, rows in ((0, 1), (5, 2), (40, 3), (100, 17), (233, 64), (299, 1)):
                sub = np.ascontiguousarray(a[r0:r0 + rows])
                np.testing.assert_array_equal(product(sub, b, bias, kernel=kernel), want[r0:r0 + rows])


def test_strided_views_of_larger_buffers(rng, threads):
    _core.set_num_threads(2)
    big_a = rng.standard_normal((20, 700), dtype=np.float32)
    wt = rng.standard_normal((512, 3000), dtype=np.float32)  # a (D, capacity) buffer
    a, b = big_a[3:13, 100:612], wt[:, :2100]
    bias_buf = rng.standard_normal(2200, dtype=np.float32)
    bias = bias_buf[50:2150]
    want = product(np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(bias))
    for kernel in F32_KERNELS:
        buf = np.full((30, 2500), -7.0, np.float32)
        out = buf[5:15, 200:2300]
        _core.matmul(a, b, out, bias, kernel=kernel)
        np.testing.assert_array_equal(out, want)
        outside = buf.copy()
        outside[5:15, 200:2300] = -7.0
        assert np.all(outside == -7.0), f"{kernel} wrote outside out"
    # A column sub-range of b gives the same bits as those columns of the full product.
    full = product(np.ascontiguousarray(a), wt)
    np.testing.assert_array_equal(product(a, wt[:, 37:1203]), full[:, 37:1203])


@pytest.mark.parametrize("kernel", F32_KERNELS)
def test_empty_dimensions(kernel):
    a, b = np.ones((4, 0), np.float32), np.ones((0, 3), np.float32)
    bias = np.array([1.5, -2.0, 0.25], np.float32)
    np.testing.assert_array_equal(product(a, b, bias, kernel=kernel), np.tile(bias, (4, 1)))
    np.testing.assert_array_equal(product(a, b, kernel=kernel), np.zeros((4, 3), np.float32))
    out = np.empty((0, 3), np.float32)
    _core.matmul(np.ones((0, 5), np.float32), np.ones((5, 3), np.float32), out, kernel=kernel)
    out = np.empty((2, 0), np.float32)
    _core.matmul(np.ones((2, 5), np.float32), np.ones((5, 0), np.float32), out, kernel=kernel)


def test_nan_and_inf_propagate():
    a = np.array([[1.0, np.nan], [np.inf, 1.0]], np.float32)
    out = product(a, np.eye(2, dtype=np.float32))
    assert np.isnan(out[0]).all() and out[1, 0] == np.inf


def _args():
    return (np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.zeros((2, 4), np.float32),
            np.ones(4, np.float32))


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_wrong_dtype_is_named(which):
    args = list(_args())
    args[which] = args[which].astype(np.float64)
    name = ("a", "b", "out", "bias")[which]
    with pytest.raises(ValueError, match=rf"^{name} must be a float32 NumPy array, got .*float64"):
        _core.matmul(*args)
    args[which] = args[which].tolist()
    with pytest.raises(ValueError, match=rf"^{name} must be a float32 NumPy array"):
        _core.matmul(*args)


@pytest.mark.parametrize("which,ndim", [(0, 1), (1, 3), (2, 1), (3, 2)])
def test_wrong_ndim_is_named(which, ndim):
    args = list(_args())
    args[which] = args[which].reshape((-1,) if ndim == 1 else (1,) * (ndim - args[which].ndim) + args[which].shape)
    name = ("a", "b", "out", "bias")[which]
    want = 1 if which == 3 else 2
    with pytest.raises(ValueError, match=rf"^{name} must be {want}-D, got {ndim} dimension"):
        _core.matmul(*args)


def test_shape_mismatches_are_named():
    a, b, out, bias = _args()
    with pytest.raises(ValueError, match=r"^b must have 3 rows \(the columns of a\), got 2"):
        _core.matmul(a, b[:2], out)
    with pytest.raises(ValueError, match=r"^out must have shape \(2, 4\), got \(2, 3\)"):
        _core.matmul(a, b, out[:, :3])
    with pytest.raises(ValueError, match=r"^out must have shape \(2, 4\), got \(1, 4\)"):
        _core.matmul(a, b, out[:1])
    with pytest.raises(ValueError, match=r"^bias must have 4 elements \(the columns of b\), got 3"):
        _core.matmul(a, b, out, bias[:3])


@pytest.mark.parametrize("which", [0, 1, 2, 3])
def test_inner_stride_is_named(which):
    args = list(_args())
    wide = np.repeat(args[which], 2, axis=-1)
    args[which] = wide[..., ::2]
    name = ("a", "b", "out", "bias")[which]
    with pytest.raises(ValueError, match=rf"^{name} must have a unit stride along its last axis \(4 bytes\), got 8"):
        _core.matmul(*args)


def test_negative_or_overlapping_row_strides_are_refused():
    a, b, out, _ = _args()
    with pytest.raises(ValueError, match=r"^a rows must have a positive stride"):
        _core.matmul(a[::-1], b, out)
    overlapping = np.lib.stride_tricks.as_strided(b, shape=(3, 4), strides=(8, 4))
    with pytest.raises(ValueError, match=r"^b rows must not overlap"):
        _core.matmul(a, overlapping, out)


def test_read_only_out_is_refused():
    a, b, out, _ = _args()
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"^out must be writeable"):
        _core.matmul(a, b, out)


def test_out_overlapping_an_input_is_refused():
    buf = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^out must not overlap a"):
        _core.matmul(buf[:, :4], buf, buf)
    with pytest.raises(ValueError, match=r"^out must not overlap b"):
        _core.matmul(np.ones((4, 4), np.float32), buf, buf[:, :4])
    flat = np.ones(20, np.float32)
    with pytest.raises(ValueError, match=r"^out must not overlap bias"):
        _core.matmul(np.ones((1, 4), np.float32), np.ones((4, 4), np.float32), flat[:16].reshape(4, 4)[:1],
                     flat[2:6])
    assert np.all(buf == 1.0) and np.all(flat == 1.0)


def test_unknown_and_non_f32_kernels_name_the_choices():
    a, b, out, _ = _args()
    for name in ("avx9", "avx512-bf16", "avx512-vnni-i8"):
        with pytest.raises(ValueError, match=r"kernel must be one of 'auto', 'avx512-f32', 'avx2-f32', 'portable-f32'"):
            _core.matmul(a, b, out, kernel=name)
    assert np.all(out == 0.0)
