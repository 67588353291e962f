"""Tests of the pooling kernels: max pooling (with arg-max) and Lp pooling."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastconv.functional import (lp_pool2d_backward, lp_pool2d_forward, max_pool2d_backward,
                                 max_pool2d_forward)
from tests.conftest import ATOL, RTOL
from tests.gradcheck import check_adjoint, check_vjp, relative_error

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]

# (shape, kernel, stride): odd sizes, N = 1, C = 1, the homework's 2x2/2 and 3x3/3, rectangular
# windows, and one shape above the kernels' serial threshold so n_threads=2 really forks.
NON_OVERLAPPING = [
    ((2, 3, 8, 8), 2, None),
    ((1, 1, 7, 9), 2, None),
    ((3, 2, 9, 7), 3, None),
    ((1, 4, 6, 10), (2, 3), None),
    ((2, 1, 11, 5), (3, 1), (3, 1)),
    ((2, 8, 33, 35), 2, None),
    ((1, 2, 10, 12), 2, 3),          # stride > kernel: gaps between windows
]
OVERLAPPING = [
    ((2, 3, 7, 8), 3, 2),
    ((1, 1, 6, 5), 2, 1),
    ((2, 2, 9, 9), (3, 2), (1, 2)),
    ((1, 2, 8, 7), (2, 2), (1, 1)),
    ((2, 8, 33, 35), 3, 2),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(shape, kernel, stride):
    kh, kw = _pair(kernel)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    oh, ow = (shape[2] - kh) // sh + 1, (shape[3] - kw) // sw + 1
    return kh, kw, sh, sw, oh, ow


# ----- independent references ---------------------------------------------------------------

def ref_reduce(x, kernel, op):
    """Non-overlapping windows (stride == kernel) by reshape-and-reduce."""
    kh, kw = _pair(kernel)
    n, c, h, w = x.shape
    oh, ow = h // kh, w // kw
    blocks = x[:, :, :oh * kh, :ow * kw].reshape(n, c, oh, kh, ow, kw)
    return op(blocks, axis=(3, 5))


def ref_max_loop(x, kernel, stride):
    """Slow loops; np.argmax returns the first maximum (or the first NaN) in row-major order."""
    n, c, h, w = x.shape
    kh, kw, sh, sw, oh, ow = _geometry(x.shape, kernel, stride)
    y = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.intp)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    win = x[a, b, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    u, v = divmod(int(np.argmax(win)), kw)
                    y[a, b, i, j] = win[u, v]
                    idx[a, b, i, j] = (i * sh + u) * w + (j * sw + v)
    return y, idx


def ref_lp_loop(x, p, kernel, stride):
    n, c, h, w = x.shape
    kh, kw, sh, sw, oh, ow = _geometry(x.shape, kernel, stride)
    x = x.astype(np.float64)
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.sum(win ** p, axis=(2, 3)) ** (1.0 / p)
    return y


def ref_lp_backward_loop(x, y, grad_out, p, kernel, stride):
    kh, kw, sh, sw, oh, ow = _geometry(x.shape, kernel, stride)
    x, y, grad_out = (a.astype(np.float64) for a in (x, y, grad_out))
    grad_x = np.zeros_like(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where((y == 0) & (p > 1), 0.0, grad_out * y ** (1.0 - p))
    for i in range(oh):
        for j in range(ow):
            sl = (slice(None), slice(None), slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
            grad_x[sl] += coef[:, :, i, j, None, None] * x[sl] ** (p - 1)
    return grad_x


def ref_max_backward(grad_out, indices, shape):
    n, c, h, w = shape
    grad_x = np.zeros((n * c, h * w))
    np.add.at(grad_x, (np.arange(n * c)[:, None], indices.reshape(n * c, -1)),
              grad_out.reshape(n * c, -1))
    return grad_x.reshape(shape)


def _distinct(rng, shape, dtype=np.float64):
    """Values spaced 0.01 apart, shuffled: no ties, and no kink within a FD step."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * 0.01).reshape(shape).astype(dtype)


def _assert_close(got, expected, dtype):
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


# ----- max pooling: forward -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape,kernel,stride", NON_OVERLAPPING)
def test_max_forward_matches_reshape_reference(dtype, n_threads, shape, kernel, stride, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True, n_threads=n_threads)
    if stride is None or _pair(stride) == _pair(kernel):
        np.testing.assert_array_equal(y, ref_reduce(x, kernel, np.max))
    y_ref, idx_ref = ref_max_loop(x, kernel, stride)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    assert idx.dtype == np.intp and y.dtype == dtype
    np.testing.assert_array_equal(max_pool2d_forward(x, kernel, stride, n_threads=n_threads), y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape,kernel,stride", OVERLAPPING)
def test_max_forward_overlapping_matches_loop_reference(dtype, n_threads, shape, kernel,
                                                        stride, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True, n_threads=n_threads)
    y_ref, idx_ref = ref_max_loop(x, kernel, stride)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(max_pool2d_forward(x, kernel, stride, n_threads=n_threads), y)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, None), (3, 2), (2, 1)])
def test_max_ties_go_to_first_maximum(kernel, stride, rng):
    x = rng.integers(0, 3, size=(2, 3, 9, 8)).astype(np.float64)
    x[0, 0] = 1.0                                  # a plane of nothing but ties
    _, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
    np.testing.assert_array_equal(idx, ref_max_loop(x, kernel, stride)[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2)])
def test_max_nan_propagates_and_first_nan_wins(dtype, kernel, stride, rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(dtype)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 1, 1] = np.inf
    x[0, 1, 4:, 4:] = -np.inf
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert y[0, 1, 0, 0] == np.inf and idx[0, 1, 0, 0] == 7
    assert np.array_equal(np.isnan(y), np.isnan(ref_max_loop(x, kernel, stride)[0]))
    np.testing.assert_array_equal(idx, ref_max_loop(x, kernel, stride)[1])
    assert np.array_equal(max_pool2d_forward(x, kernel, stride), y, equal_nan=True)


def test_max_all_minus_inf_window():
    x = np.full((1, 1, 4, 4), -np.inf)
    for kernel, stride in [(2, None), (3, 1)]:
        y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
        assert np.all(y == -np.inf)
        np.testing.assert_array_equal(idx, ref_max_loop(x, kernel, stride)[1])


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 4), sw=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_max_forward_property(h, w, kh, kw, sh, sw, seed):
    kh, kw = min(kh, h), min(kw, w)
    x = np.random.default_rng(seed).integers(-3, 4, size=(2, 2, h, w)).astype(np.float32)
    y, idx = max_pool2d_forward(x, (kh, kw), (sh, sw), return_indices=True)
    y_ref, idx_ref = ref_max_loop(x, (kh, kw), (sh, sw))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


# ----- max pooling: backward ------------------------------------------------------------------

@pytest.mark.parametrize("shape,kernel,stride", [((1, 1, 5, 7), 2, None), ((2, 2, 6, 5), 3, 2),
                                                 ((1, 2, 5, 5), 2, 1), ((2, 1, 7, 6), 3, None)])
def test_max_backward_gradcheck(shape, kernel, stride, rng):
    x0 = _distinct(rng, shape)
    _, idx = max_pool2d_forward(x0, kernel, stride, return_indices=True)
    check_vjp(lambda z: max_pool2d_forward(z, kernel, stride),
              lambda z, y, g: max_pool2d_backward(g, idx, z.shape), x0, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape,kernel,stride", NON_OVERLAPPING + OVERLAPPING)
def test_max_backward_matches_scatter_reference(dtype, n_threads, shape, kernel, stride, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
    g = rng.standard_normal(y.shape).astype(dtype)
    grad_x = max_pool2d_backward(g, idx, x.shape, n_threads=n_threads)
    assert grad_x.dtype == dtype and grad_x.shape == x.shape
    _assert_close(grad_x, ref_max_backward(g, idx, x.shape), dtype)


@pytest.mark.parametrize("from_forward", [True, False])
@pytest.mark.parametrize("shape,kernel,stride", [((2, 3, 8, 9), 2, None), ((2, 2, 7, 7), 3, 1),
                                                 ((1, 1, 5, 5), 3, 2)])
def test_max_backward_adjoint_of_selection(from_forward, shape, kernel, stride, rng):
    x = rng.standard_normal(shape)
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
    if not from_forward:
        # Arbitrary in-range indices: the backward is a scatter-add for any index.
        idx = rng.integers(0, shape[2] * shape[3], size=y.shape).astype(np.intp)
    n, c = shape[:2]

    def select(v):
        return np.take_along_axis(v.reshape(n, c, -1), idx.reshape(n, c, -1), 2).reshape(y.shape)

    check_adjoint(lambda u: max_pool2d_backward(u, idx, shape), select,
                  rng.standard_normal(y.shape), rng.standard_normal(shape))


def test_max_backward_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0                              # the maximum of all four 2x2 windows
    y, idx = max_pool2d_forward(x, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx, 4)
    grad_x = max_pool2d_backward(np.ones_like(y), idx, x.shape)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(grad_x, expected)


@pytest.mark.parametrize("bad", [-1, 42, 10**12])
@pytest.mark.parametrize("shape,oshape", [((1, 2, 6, 7), (1, 2, 3, 3)),   # 2x2/2 shapes
                                          ((1, 2, 6, 7), (1, 2, 2, 5))])
def test_max_backward_out_of_range_index_raises(bad, shape, oshape, rng):
    idx = rng.integers(0, 42, size=oshape).astype(np.intp)
    idx[0, 1, -1, -1] = bad
    g = rng.standard_normal(oshape)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, H\*W\) = \[0, 42\)"):
        max_pool2d_backward(g, idx, shape)
    with pytest.raises(ValueError, match="out-of-range"):
        max_pool2d_backward(g, idx, shape, n_threads=2)


# ----- Lp pooling -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("p", [2.0, 3.0, 1.0, 2.5])
@pytest.mark.parametrize("shape,kernel,stride", NON_OVERLAPPING + OVERLAPPING)
def test_lp_forward_matches_references(dtype, n_threads, p, shape, kernel, stride, rng):
    x = rng.standard_normal(shape)
    if p != 2.0:
        x = np.abs(x) + 0.1
    x = x.astype(dtype)
    y = lp_pool2d_forward(x, p, kernel, stride, n_threads=n_threads)
    assert y.dtype == dtype
    _assert_close(y, ref_lp_loop(x, p, kernel, stride), dtype)
    if stride is None:
        xd = x.astype(np.float64)
        _assert_close(y, ref_reduce(xd ** p, kernel, np.sum) ** (1 / p), dtype)


def test_lp_forward_negative_input_non_integer_p_is_nan():
    x = np.ones((1, 1, 2, 2))
    x[0, 0, 0, 0] = -1.0
    assert np.isnan(lp_pool2d_forward(x, 2.5, 2)).all()
    np.testing.assert_allclose(lp_pool2d_forward(x, 3, 2), [[[[2.0 ** (1 / 3)]]]])
    np.testing.assert_allclose(lp_pool2d_forward(x, 1, 2), [[[[2.0]]]])


@pytest.mark.parametrize("p,positive", [(2.0, False), (3.0, True), (1.5, True), (1.0, False)])
@pytest.mark.parametrize("shape,kernel,stride", [((1, 1, 5, 7), 2, None), ((2, 2, 6, 5), 3, 2),
                                                 ((1, 2, 5, 5), 2, 1), ((2, 1, 7, 6), (3, 2), None),
                                                 ((1, 1, 7, 7), 2, 3)])
def test_lp_backward_gradcheck(p, positive, shape, kernel, stride, rng):
    x0 = rng.standard_normal(shape)
    if positive:
        x0 = np.abs(x0) + 0.5
    check_vjp(lambda z: lp_pool2d_forward(z, p, kernel, stride),
              lambda z, y, g: lp_pool2d_backward(z, y, g, p, kernel, stride), x0, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("p", [2.0, 3.0])
@pytest.mark.parametrize("shape,kernel,stride", NON_OVERLAPPING + OVERLAPPING)
def test_lp_backward_matches_loop_reference(dtype, n_threads, p, shape, kernel, stride, rng):
    x = (np.abs(rng.standard_normal(shape)) + 0.1).astype(dtype)
    y = lp_pool2d_forward(x, p, kernel, stride)
    g = rng.standard_normal(y.shape).astype(dtype)
    grad_x = lp_pool2d_backward(x, y, g, p, kernel, stride, n_threads=n_threads)
    assert grad_x.dtype == dtype
    expected = ref_lp_backward_loop(x, y, g, p, kernel, stride)
    assert relative_error(grad_x, expected) < (1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 1)])
def test_lp_backward_zero_window_gives_zero_gradient(kernel, stride):
    x = np.zeros((1, 1, 4, 4))
    y = lp_pool2d_forward(x, 2, kernel, stride)
    g = np.ones_like(y)
    np.testing.assert_array_equal(lp_pool2d_backward(x, y, g, 2, kernel, stride), 0.0)
    np.testing.assert_array_equal(lp_pool2d_backward(x, y, g, 3, kernel, stride), 0.0)
    # p = 1 is linear: each window passes grad_out through, y = 0 or not.
    np.testing.assert_array_equal(lp_pool2d_backward(x, y, g, 1, kernel, stride),
                                  ref_lp_backward_loop(x, y, g, 1, kernel, stride))
    assert lp_pool2d_backward(x, y, g, 1, kernel, stride).min() >= 1


def test_uncovered_elements_get_zero_gradient(rng):
    x = rng.standard_normal((1, 2, 5, 7))
    x[..., -1, :] = np.nan                         # the last row and column are never pooled
    x[..., :, -1] = np.inf
    y = lp_pool2d_forward(x, 2, 2)
    assert np.isfinite(y).all()
    gx = lp_pool2d_backward(x, y, np.ones_like(y), 2, 2)
    np.testing.assert_array_equal(gx[..., -1, :], 0.0)
    np.testing.assert_array_equal(gx[..., :, -1], 0.0)
    _, idx = max_pool2d_forward(x, 2, return_indices=True)
    gm = max_pool2d_backward(np.ones_like(y), idx, x.shape)
    np.testing.assert_array_equal(gm[..., -1, :], 0.0)
    np.testing.assert_array_equal(gm.sum(axis=(2, 3)), 6.0)


# ----- cross-cutting properties ---------------------------------------------------------------

def _all_ops(x, kernel=2, stride=None, n_threads=None):
    """Outputs of the four functions on x (positive inputs keep p = 3 real)."""
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True, n_threads=n_threads)
    g = np.linspace(-1, 1, y.size).reshape(y.shape).astype(x.dtype)
    out = [y, idx, max_pool2d_backward(g, idx, x.shape, n_threads=n_threads)]
    for p in (2.0, 3.0):
        yl = lp_pool2d_forward(x, p, kernel, stride, n_threads=n_threads)
        out += [yl, lp_pool2d_backward(x, yl, g, p, kernel, stride, n_threads=n_threads)]
    return out


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), (3, None)])
def test_float32_agrees_with_float64(kernel, stride, rng):
    x = np.abs(_distinct(rng, (2, 3, 13, 11))) + 0.5
    for a, b in zip(_all_ops(x.astype(np.float32), kernel, stride), _all_ops(x, kernel, stride)):
        if a.dtype == np.intp:
            np.testing.assert_array_equal(a, b)
        else:
            assert relative_error(a, b) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2)])
def test_deterministic_and_thread_count_independent(dtype, kernel, stride, rng):
    x = (np.abs(rng.standard_normal((4, 8, 30, 31))) + 0.1).astype(dtype)   # above threshold
    first = _all_ops(x, kernel, stride, n_threads=2)
    for a, b in zip(first, _all_ops(x, kernel, stride, n_threads=2)):
        assert np.array_equal(a, b)
    # Each plane belongs to one thread, so 1 and 2 threads agree bitwise, not just closely.
    for a, b in zip(first, _all_ops(x, kernel, stride, n_threads=1)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2)])
def test_non_contiguous_inputs_equal_contiguous(kernel, stride, rng):
    base = np.abs(rng.standard_normal((2, 3, 9, 16))) + 0.1
    x = np.ascontiguousarray(base[:, :, :, ::2])
    expected = _all_ops(x, kernel, stride)
    views = [np.asfortranarray(x), base[:, :, :, ::2],
             np.ascontiguousarray(x[:, :, ::-1, ::-1])[:, :, ::-1, ::-1],
             np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)]
    for v in views:
        assert not v.flags.c_contiguous
        for a, b in zip(_all_ops(v, kernel, stride), expected):
            np.testing.assert_array_equal(a, b)
    # Non-contiguous grad_out / y / indices in the backward calls.
    y, idx = max_pool2d_forward(x, kernel, stride, return_indices=True)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(
        max_pool2d_backward(np.asfortranarray(g), np.asfortranarray(idx), x.shape),
        max_pool2d_backward(g, idx, x.shape))
    yl = lp_pool2d_forward(x, 2, kernel, stride)
    np.testing.assert_array_equal(
        lp_pool2d_backward(x, np.asfortranarray(yl), np.asfortranarray(g), 2, kernel, stride),
        lp_pool2d_backward(x, yl, g, 2, kernel, stride))


def test_read_only_inputs(rng):
    x = np.abs(rng.standard_normal((2, 2, 6, 6))) + 0.1
    expected = _all_ops(x)
    x.setflags(write=False)
    y, idx = max_pool2d_forward(x, 2, return_indices=True)
    yl = lp_pool2d_forward(x, 2, 2)
    g = np.linspace(-1, 1, y.size).reshape(y.shape)
    for a in (y, idx, yl, g):
        a.setflags(write=False)
    np.testing.assert_array_equal(max_pool2d_backward(g, idx, x.shape), expected[2])
    np.testing.assert_array_equal(lp_pool2d_backward(x, yl, g, 2, 2), expected[4])


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8)])
def test_empty_batch(shape):
    x = np.empty(shape, np.float32)
    y, idx = max_pool2d_forward(x, 2, return_indices=True)
    assert y.shape == idx.shape == shape[:2] + (4, 4) and y.dtype == np.float32
    assert max_pool2d_backward(y, idx, shape).shape == shape
    yl = lp_pool2d_forward(x, 2, 2)
    assert yl.shape == shape[:2] + (4, 4)
    assert lp_pool2d_backward(x, yl, yl, 2, 2).shape == shape


def test_nan_input_does_not_crash(rng):
    x = rng.standard_normal((2, 3, 7, 7))
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 5, 5] = np.inf
    for kernel, stride in [(2, None), (3, 1)]:
        outs = _all_ops(x, kernel, stride)
        assert np.isnan(outs[0]).any() and np.isnan(outs[3]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_equal_to_input_size(dtype, rng):
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    y, idx = max_pool2d_forward(x, (5, 4), return_indices=True)
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(y[..., 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(idx[..., 0, 0], x.reshape(2, 3, -1).argmax(axis=2))
    yl = lp_pool2d_forward(x, 2, (5, 4), 7)
    _assert_close(yl[..., 0, 0], np.sqrt((x.astype(np.float64) ** 2).sum(axis=(2, 3))), dtype)
    assert max_pool2d_forward(x[:, :, :2, :2], 2).shape == (2, 3, 1, 1)


def test_out_buffers_are_filled_and_returned(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    y_buf, gx_buf = np.empty((2, 3, 3, 3)), np.empty_like(x)
    y, idx = max_pool2d_forward(x, 2, return_indices=True, out=y_buf)
    assert y is y_buf
    assert max_pool2d_backward(y, idx, x.shape, out=gx_buf) is gx_buf
    yl = lp_pool2d_forward(x, 2, 2, out=np.empty((2, 3, 3, 3)))
    gl = lp_pool2d_backward(x, yl, y, 2, 2, out=np.full_like(x, np.nan))
    np.testing.assert_array_equal(gl, lp_pool2d_backward(x, yl, y, 2, 2))


# ----- validation -----------------------------------------------------------------------------

X = np.zeros((1, 2, 6, 6))
Y = np.zeros((1, 2, 3, 3))
IDX = np.zeros((1, 2, 3, 3), np.intp)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: max_pool2d_forward(X.tolist(), 2), TypeError, "x must be a numpy.ndarray"),
    (lambda: max_pool2d_forward(X[0], 2), ValueError, r"x must be 4-D \(N, C, H, W\)"),
    (lambda: max_pool2d_forward(X.astype(np.int32), 2), TypeError, "float32 or float64"),
    (lambda: max_pool2d_forward(X, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: max_pool2d_forward(X, 2.0), TypeError, "kernel_size must be an int"),
    (lambda: max_pool2d_forward(X, (2, 2, 2)), ValueError, "kernel_size must be an int or a pair"),
    (lambda: max_pool2d_forward(X, 2, 0), ValueError, "stride must be >= 1"),
    (lambda: max_pool2d_forward(X, (2, -1)), ValueError, "kernel_size must be >= 1"),
    (lambda: max_pool2d_forward(X, (7, 2)), ValueError, r"kernel_size \(7, 2\) is larger"),
    (lambda: max_pool2d_forward(X, (2, 7)), ValueError, "larger than the input"),
    (lambda: max_pool2d_forward(X, 2, out=np.empty((1, 2, 3, 4))), ValueError,
     r"out must have shape \(1, 2, 3, 3\)"),
    (lambda: max_pool2d_forward(X, 2, out=np.empty((1, 2, 3, 3), np.float32)), TypeError,
     "out must have dtype float64"),
    (lambda: max_pool2d_forward(X, 2, out=np.empty((1, 2, 3, 3), order="F")[:, :, :, :]),
     ValueError, "C-contiguous"),
    (lambda: max_pool2d_forward(X, 6, out=X.reshape(-1)[:2].reshape(1, 2, 1, 1)), ValueError,
     "share memory"),
    (lambda: max_pool2d_forward(X, 2, n_threads=0), ValueError, "n_threads"),
    (lambda: max_pool2d_backward(Y.tolist(), IDX, X.shape), TypeError,
     "grad_out must be a numpy.ndarray"),
    (lambda: max_pool2d_backward(Y[0], IDX, X.shape), ValueError, "grad_out must be 4-D"),
    (lambda: max_pool2d_backward(Y.astype(np.int64), IDX, X.shape), TypeError, "grad_out must"),
    (lambda: max_pool2d_backward(Y, IDX.tolist(), X.shape), TypeError,
     "indices must be a numpy.ndarray"),
    (lambda: max_pool2d_backward(Y, IDX[0], X.shape), ValueError, "indices must be 4-D"),
    (lambda: max_pool2d_backward(Y, IDX.astype(np.int32), X.shape), TypeError,
     "indices must have dtype int64"),
    (lambda: max_pool2d_backward(Y, IDX.astype(np.float64), X.shape), TypeError,
     "indices must have dtype"),
    (lambda: max_pool2d_backward(Y, IDX[:, :, :2], X.shape), ValueError,
     r"indices must have shape \(1, 2, 3, 3\) like grad_out"),
    (lambda: max_pool2d_backward(Y, IDX, (1, 2, 6)), ValueError, "input_shape must be a tuple"),
    (lambda: max_pool2d_backward(Y, IDX, (1, 2, 6, "a")), TypeError, "input_shape must hold"),
    (lambda: max_pool2d_backward(Y, IDX, (1, 2, 0, 6)), ValueError, "H, W >= 1"),
    (lambda: max_pool2d_backward(Y, IDX, (2, 2, 6, 6)), ValueError, r"input_shape \(N, C\)"),
    (lambda: max_pool2d_backward(Y, IDX, X.shape, out=np.empty((1, 2, 6, 5))), ValueError,
     "out must have shape"),
    (lambda: max_pool2d_backward(Y, IDX, (1, 2, 3, 3), out=Y), ValueError, "share memory"),
    (lambda: lp_pool2d_forward(X, 0.5, 2), ValueError, "p must be >= 1"),
    (lambda: lp_pool2d_forward(X, np.inf, 2), ValueError, "p must be finite"),
    (lambda: lp_pool2d_forward(X, np.nan, 2), ValueError, "p must be finite"),
    (lambda: lp_pool2d_forward(X, "2", 2), TypeError, "p must be a real number"),
    (lambda: lp_pool2d_forward(X[0], 2, 2), ValueError, "x must be 4-D"),
    (lambda: lp_pool2d_forward(X.astype(np.float16), 2, 2), TypeError, "float32 or float64"),
    (lambda: lp_pool2d_forward(X, 2, 8), ValueError, "larger than the input"),
    (lambda: lp_pool2d_forward(X, 2, 2, out=X[:, :, :3, :3]), ValueError, "C-contiguous"),
    (lambda: lp_pool2d_backward(X, Y.astype(np.float32), Y, 2, 2), TypeError,
     r"y must have the same dtype as x \(float64\)"),
    (lambda: lp_pool2d_backward(X, Y, Y.astype(np.float32), 2, 2), TypeError,
     "grad_out must have the same dtype as x"),
    (lambda: lp_pool2d_backward(X, Y, Y[:, :, :2], 2, 2), ValueError,
     r"grad_out must have shape \(1, 2, 3, 3\) like y"),
    (lambda: lp_pool2d_backward(X, Y, Y, 2, 3), ValueError,
     r"y must have shape \(1, 2, 2, 2\)"),
    (lambda: lp_pool2d_backward(X, Y, Y, 0, 2), ValueError, "p must be >= 1"),
    (lambda: lp_pool2d_backward(X, Y[0], Y, 2, 2), ValueError, "y must be 4-D"),
    (lambda: lp_pool2d_backward(X, Y, Y, 2, 2, out=X), ValueError, "share memory"),
    (lambda: lp_pool2d_backward(X, Y, Y, 2, 2, out=np.empty(X.shape, np.float32)), TypeError,
     "out must have dtype"),
])
def test_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_validation_read_only_out():
    out = np.empty((1, 2, 3, 3))
    out.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        max_pool2d_forward(X, 2, out=out)


# --- average pooling --------------------------------------------------------------------

def _avg_pool_reference(x, kh, kw, sh, sw):
    """PyTorch AvgPool2d (no padding, floor mode) as a plain loop over windows."""
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.empty((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].astype(
                np.float64).mean(axis=(2, 3))
    return y


AVG_CASES = [((2, 3, 8, 8), 2, None), ((1, 2, 7, 9), (3, 2), (2, 3)), ((3, 1, 5, 5), 3, 1),
             ((1, 1, 4, 4), 4, None), ((2, 70, 16, 16), 2, None)]


@pytest.mark.parametrize("shape, k, s", AVG_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_avg_pool_forward_matches_reference(rng, shape, k, s, dtype, n_threads):
    from fastconv.functional import avg_pool2d_forward
    from fastconv._validation import as_pair
    x = rng.standard_normal(shape).astype(dtype)
    kh, kw = as_pair("t", "k", k, 1)
    sh, sw = (kh, kw) if s is None else as_pair("t", "s", s, 1)
    y = avg_pool2d_forward(x, k, s, n_threads=n_threads)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, _avg_pool_reference(x, kh, kw, sh, sw), rtol=tol, atol=tol)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, avg_pool2d_forward(x, k, s, n_threads=1))


@pytest.mark.parametrize("shape, k, s", AVG_CASES[:4])
def test_avg_pool_backward_matches_finite_differences(rng, shape, k, s):
    from fastconv.functional import avg_pool2d_backward, avg_pool2d_forward
    from .gradcheck import check_vjp
    x = rng.standard_normal(shape)
    check_vjp(lambda z: avg_pool2d_forward(z, k, s),
              lambda z, y, g: avg_pool2d_backward(g, z.shape, k, s), x, rng)


@pytest.mark.parametrize("call, exc, match", [
    (lambda F: F.avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 5), ValueError, "larger than"),
    (lambda F: F.avg_pool2d_forward(np.zeros((1, 4, 4)), 2), ValueError, "4-D"),
    (lambda F: F.avg_pool2d_forward(np.zeros((1, 1, 4, 4), np.int32), 2), TypeError, "dtype"),
    (lambda F: F.avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, 0), ValueError, "stride"),
    (lambda F: F.avg_pool2d_backward(np.zeros((1, 1, 3, 3)), (1, 1, 4, 4), 2), ValueError,
     "grad_out must have shape"),
    (lambda F: F.avg_pool2d_backward(np.zeros((1, 1, 2, 2)), (1, 1, 4), 2), ValueError,
     "input_shape"),
])
def test_avg_pool_validation(call, exc, match):
    import fastconv.functional as F
    with pytest.raises(exc, match=match):
        call(F)
