"""Sigmoid, tanh, relu, softmax and log-softmax kernels against NumPy references."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv.functional
from fastconv.functional._activation import (
    log_softmax_backward, log_softmax_forward, relu_backward, relu_forward,
    sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward,
    tanh_backward, tanh_forward)
from tests.gradcheck import check_vjp, relative_error

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]
SHAPES = [(1,), (7,), (3, 5), (1, 1, 1, 1), (2, 3, 5, 7)]
BIG = (1 << 16) + 13          # above the parallel threshold, not a multiple of the chunk
TOL = {np.float32: 2e-6, np.float64: 1e-13}


# ---------------------------------------------------------------------------------------
# References (float64 NumPy, written independently of the kernels)
# ---------------------------------------------------------------------------------------

def ref_sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, np.float64)))


def ref_softmax(x, beta=1.0):
    z = beta * np.asarray(x, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ref_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


ELEMENTWISE = {
    "sigmoid": (sigmoid_forward, sigmoid_backward, ref_sigmoid,
                lambda y, g: g * y * (1 - y)),
    "tanh": (tanh_forward, tanh_backward, lambda x: np.tanh(x.astype(np.float64)),
             lambda y, g: g * (1 - y * y)),
    "relu": (relu_forward, relu_backward, lambda x: np.maximum(x.astype(np.float64), 0),
             lambda y, g: g * (y > 0)),
}
ALL_FUNCS = [sigmoid_forward, tanh_forward, relu_forward, log_softmax_forward, softmax_forward]
ALL_BACKWARDS = [sigmoid_backward, tanh_backward, relu_backward, log_softmax_backward,
                 softmax_backward]


def away_from_zero(rng, shape):
    """Normal draws pushed at least 0.1 from relu's kink."""
    x = rng.standard_normal(shape)
    return x + 0.1 * np.sign(x) + (x == 0) * 0.1


# ---------------------------------------------------------------------------------------
# Elementwise forward / backward
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape", SHAPES + [(BIG,)])
def test_elementwise_forward_and_backward_match_reference(op, dtype, n_threads, shape, rng):
    fwd, bwd, ref, ref_bwd = ELEMENTWISE[op]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    y = fwd(x, n_threads=n_threads)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, ref(x), rtol=TOL[dtype], atol=TOL[dtype])
    g = rng.standard_normal(shape).astype(dtype)
    grad = bwd(y, g, n_threads=n_threads)
    assert grad.shape == x.shape and grad.dtype == dtype
    np.testing.assert_allclose(grad, ref_bwd(y.astype(np.float64), g.astype(np.float64)),
                               rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (1, 1, 2, 3)])
def test_elementwise_gradcheck(op, shape, rng):
    fwd, bwd, _, _ = ELEMENTWISE[op]
    x = away_from_zero(rng, shape)
    check_vjp(fwd, lambda x_, y, g: bwd(y, g), x, rng)


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_elementwise_float32_agrees_with_float64(op, rng):
    fwd, bwd, _, _ = ELEMENTWISE[op]
    x = away_from_zero(rng, (4, 33))
    g = rng.standard_normal(x.shape)
    y64, y32 = fwd(x), fwd(x.astype(np.float32))
    assert relative_error(y32, y64) < 1e-5
    assert relative_error(bwd(y32, g.astype(np.float32)), bwd(y64, g)) < 1e-5


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_deterministic_and_thread_independent(op, dtype, rng):
    fwd, bwd, _, _ = ELEMENTWISE[op]
    x = rng.standard_normal(BIG).astype(dtype)
    a, b = fwd(x, n_threads=2), fwd(x, n_threads=2)
    np.testing.assert_array_equal(a, b)
    # Elementwise work is split on a race-free axis: even 1 vs 2 threads is bitwise equal.
    np.testing.assert_array_equal(a, fwd(x, n_threads=1))
    np.testing.assert_array_equal(bwd(a, x, n_threads=1), bwd(a, x, n_threads=2))


def test_tanh_float32_accuracy_dense_grid():
    """The float32 rational approximation is within 2e-7 (a few ulp) of the exact tanh."""
    x = np.concatenate([np.linspace(-12, 12, 2_000_001, dtype=np.float32),
                        np.logspace(-30, 1.2, 20001).astype(np.float32),
                        -np.logspace(-30, 1.2, 20001).astype(np.float32),
                        np.array([0.0, -0.0, 8.9, 9.0, 9.1, 1e30, -1e30,
                                  np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                                  1e-45], dtype=np.float32)])
    y = tanh_forward(x)
    exact = np.tanh(x.astype(np.float64))
    assert np.max(np.abs(y - exact)) <= 2e-7
    # Tiny inputs keep full relative accuracy (tanh(x) ~ x), not just absolute.
    small = (np.abs(x) < 1e-3) & (x != 0)
    assert np.max(np.abs(y[small] - exact[small]) / np.abs(exact[small])) < 2e-7
    assert np.all(np.abs(y) <= 1)
    np.testing.assert_array_equal(tanh_forward(-x), -y)
    special = tanh_forward(np.array([np.inf, -np.inf, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(special[:2], [1.0, -1.0])
    assert np.isnan(special[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_pass_through(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 1000.0, -1000.0, 0.0], dtype=dtype)
    s = sigmoid_forward(x)
    np.testing.assert_array_equal(s[[0, 1, 3, 4, 5]], [1.0, 0.0, 1.0, 0.0, 0.5])
    assert np.isnan(s[2])
    t = tanh_forward(x)
    np.testing.assert_array_equal(t[[0, 1, 3, 4, 5]], [1.0, -1.0, 1.0, -1.0, 0.0])
    assert np.isnan(t[2])
    r = relu_forward(x)
    np.testing.assert_array_equal(r[[0, 1, 3, 4, 5]], [np.inf, 0.0, 1000.0, 0.0, 0.0])
    assert np.isnan(r[2])
    # relu's backward masks with y > 0, which is false for NaN: the gradient is 0 there.
    np.testing.assert_array_equal(relu_backward(r, np.ones_like(r)), [1, 0, 0, 1, 0, 0])


def test_sigmoid_tails_keep_relative_accuracy():
    x = np.array([-30.0, -80.0, -700.0])
    np.testing.assert_allclose(sigmoid_forward(x), ref_sigmoid(x), rtol=1e-14)
    assert sigmoid_forward(np.array([-80.0], np.float32))[0] > 0


# ---------------------------------------------------------------------------------------
# Softmax / log-softmax
# ---------------------------------------------------------------------------------------

ROW_SHAPES = [(1,), (9,), (1, 1), (1, 7), (5, 3), (2, 3, 4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(3001, 17)])
@pytest.mark.parametrize("beta", [1.0, 0.5, -2.0, 0.0])
def test_softmax_forward_backward_match_reference(dtype, n_threads, shape, beta, rng):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    y = softmax_forward(x, beta, n_threads=n_threads)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, ref_softmax(x, beta), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=TOL[dtype] * 10)
    g = rng.standard_normal(shape).astype(dtype)
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    expected = beta * y64 * (g64 - (g64 * y64).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(softmax_backward(y, g, beta, n_threads=n_threads), expected,
                               rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape", ROW_SHAPES + [(3001, 17)])
def test_log_softmax_forward_backward_match_reference(dtype, n_threads, shape, rng):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    y = log_softmax_forward(x, n_threads=n_threads)
    np.testing.assert_allclose(y, ref_log_softmax(x), rtol=TOL[dtype], atol=TOL[dtype] * 4)
    g = rng.standard_normal(shape).astype(dtype)
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    expected = g64 - np.exp(y64) * g64.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(log_softmax_backward(y, g, n_threads=n_threads), expected,
                               rtol=TOL[dtype], atol=TOL[dtype] * 4)


@pytest.mark.parametrize("shape", [(1,), (4,), (1, 5), (3, 4), (2, 1, 3)])
@pytest.mark.parametrize("beta", [1.0, 0.7, -1.3])
def test_softmax_gradcheck(shape, beta, rng):
    x = rng.standard_normal(shape)
    check_vjp(lambda z: softmax_forward(z, beta),
              lambda x_, y, g: softmax_backward(y, g, beta), x, rng)


@pytest.mark.parametrize("shape", [(1,), (4,), (1, 5), (3, 4), (2, 1, 3)])
def test_log_softmax_gradcheck(shape, rng):
    x = rng.standard_normal(shape)
    check_vjp(log_softmax_forward, lambda x_, y, g: log_softmax_backward(y, g), x, rng)


def test_softmax_float32_agrees_with_float64(rng):
    x = rng.standard_normal((6, 11))
    g = rng.standard_normal(x.shape)
    for beta in (1.0, -0.5):
        y64, y32 = softmax_forward(x, beta), softmax_forward(x.astype(np.float32), beta)
        assert relative_error(y32, y64) < 1e-5
        assert relative_error(softmax_backward(y32, g.astype(np.float32), beta),
                              softmax_backward(y64, g, beta)) < 1e-5
    l64, l32 = log_softmax_forward(x), log_softmax_forward(x.astype(np.float32))
    assert relative_error(l32, l64) < 1e-5
    assert relative_error(log_softmax_backward(l32, g.astype(np.float32)),
                          log_softmax_backward(l64, g)) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_deterministic_and_thread_independent(dtype, rng):
    x = rng.standard_normal((4001, 13)).astype(dtype)
    for f in (softmax_forward, log_softmax_forward):
        a = f(x, n_threads=2)
        np.testing.assert_array_equal(a, f(x, n_threads=2))
        # Each row is reduced serially by one thread: 1 and 2 threads are bitwise equal.
        np.testing.assert_array_equal(a, f(x, n_threads=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_huge_scores(dtype):
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, -1e4 + 1, -1e4]], dtype=dtype)
    y = softmax_forward(x)
    np.testing.assert_allclose(y, ref_softmax(x), rtol=1e-6, atol=1e-30)
    lp = log_softmax_forward(np.array([0.0, -1000.0], dtype=dtype))
    # log(softmax) would give log(0) = -inf here; log-sum-exp stays exact.
    np.testing.assert_allclose(lp, [0.0, -1000.0], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_nan_inf_rows_documented_behaviour(dtype):
    """A row with +inf or NaN (or all -inf) becomes all NaN; -inf entries get probability 0."""
    x = np.array([[0.0, np.inf, 1.0], [0.0, np.nan, 1.0], [-np.inf, -np.inf, -np.inf],
                  [0.0, -np.inf, 0.0]], dtype=dtype)
    for f in (softmax_forward, log_softmax_forward):
        y = f(x)
        assert np.all(np.isnan(y[:3]))
    np.testing.assert_allclose(softmax_forward(x)[3], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(log_softmax_forward(x)[3], [-np.log(2), -np.inf, -np.log(2)])
    # With beta < 0, +inf scores are the ones pushed to probability 0.
    np.testing.assert_allclose(softmax_forward(np.array([0.0, np.inf], dtype), -1.0), [1, 0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=12),
       st.floats(-100, 100), st.floats(-3, 3))
def test_softmax_is_shift_invariant(values, shift, beta):
    x = np.array(values)
    np.testing.assert_allclose(softmax_forward(x + shift, beta), softmax_forward(x, beta),
                               rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Layout, empty inputs, read-only inputs, out= buffers
# ---------------------------------------------------------------------------------------

def _variants(x):
    """Fortran-order, reversed-stride and sliced views holding the same values as x."""
    yield np.asfortranarray(x)
    yield np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    yield big[..., ::2]


@pytest.mark.parametrize("f", ALL_FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs_equal_contiguous(f, dtype, rng):
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    expected = f(x)
    for v in _variants(x):
        assert not v.flags.c_contiguous
        np.testing.assert_array_equal(f(v), expected)


@pytest.mark.parametrize("b", ALL_BACKWARDS)
def test_non_contiguous_backward_inputs_equal_contiguous(b, rng):
    y = rng.random((4, 6))
    g = rng.standard_normal((4, 6))
    expected = b(y, g)
    for yv, gv in zip(_variants(y), _variants(g)):
        np.testing.assert_array_equal(b(yv, gv), expected)


@pytest.mark.parametrize("f", ALL_FUNCS)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_empty_inputs_return_empty(f, shape):
    x = np.empty(shape)
    assert f(x).shape == shape
    for b in ALL_BACKWARDS:
        assert b(x, x.copy()).shape == shape


@pytest.mark.parametrize("f", ALL_FUNCS)
def test_read_only_inputs(f, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    expected = f(x)
    x.flags.writeable = False
    np.testing.assert_array_equal(f(x), expected)


@pytest.mark.parametrize("b", ALL_BACKWARDS)
def test_read_only_backward_inputs(b, rng):
    y, g = rng.random((3, 5)), rng.standard_normal((3, 5))
    expected = b(y, g)
    y.flags.writeable = g.flags.writeable = False
    np.testing.assert_array_equal(b(y, g), expected)


@pytest.mark.parametrize("f", ALL_FUNCS)
def test_out_buffer(f, rng):
    x = rng.standard_normal((3, 5))
    out = np.empty_like(x)
    assert f(x, out=out) is out
    np.testing.assert_array_equal(out, f(x))
    with pytest.raises(ValueError, match="out must have shape"):
        f(x, out=np.empty((5, 3)))
    with pytest.raises(TypeError, match="out must have dtype"):
        f(x, out=np.empty((3, 5), np.float32))
    with pytest.raises(ValueError, match="share memory"):
        f(x, out=x)
    with pytest.raises(ValueError, match="C-contiguous"):
        f(x, out=np.empty((5, 3)).T)


@pytest.mark.parametrize("b", ALL_BACKWARDS)
def test_backward_out_buffer(b, rng):
    y, g = rng.random((3, 5)), rng.standard_normal((3, 5))
    out = np.empty_like(y)
    assert b(y, g, out=out) is out
    np.testing.assert_array_equal(out, b(y, g))
    with pytest.raises(ValueError, match="share memory"):
        b(y, g, out=g)
    with pytest.raises(ValueError, match="out must have shape"):
        b(y, g, out=np.empty((3, 6)))


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("f", ALL_FUNCS)
def test_forward_validation(f):
    name = f.__name__
    with pytest.raises(TypeError, match=f"{name}: x must be a numpy.ndarray"):
        f([1.0, 2.0])
    with pytest.raises(ValueError, match=f"{name}: x must be at least 1-D"):
        f(np.ones(()))
    with pytest.raises(TypeError, match=f"{name}: x must have dtype float32 or float64"):
        f(np.arange(3))
    with pytest.raises(ValueError, match="n_threads must be a non-zero"):
        f(np.ones(3), n_threads=0)


@pytest.mark.parametrize("b", ALL_BACKWARDS)
def test_backward_validation(b):
    name = b.__name__
    y = np.full((2, 3), 0.5)
    with pytest.raises(TypeError, match=f"{name}: y must be a numpy.ndarray"):
        b(0.5, y)
    with pytest.raises(TypeError, match=f"{name}: grad_out must be a numpy.ndarray"):
        b(y, 1.0)
    with pytest.raises(ValueError, match=f"{name}: y must be at least 1-D"):
        b(np.ones(()), np.ones(()))
    with pytest.raises(TypeError, match="grad_out must have the same dtype as y"):
        b(y, y.astype(np.float32))
    with pytest.raises(TypeError, match="y must have dtype float32 or float64"):
        b(y.astype(np.float16), y)
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 3\)"):
        b(y, np.ones((3, 2)))


@pytest.mark.parametrize("beta, exc, msg", [(np.inf, ValueError, "finite"),
                                            (np.nan, ValueError, "finite"),
                                            ("1", TypeError, "real number"),
                                            (None, TypeError, "real number")])
def test_softmax_rejects_bad_beta(beta, exc, msg):
    with pytest.raises(exc, match=f"softmax_forward: beta must be a {msg}|beta must be {msg}"):
        softmax_forward(np.ones(3), beta)
    with pytest.raises(exc, match=f"softmax_backward: beta must be a {msg}|beta must be {msg}"):
        softmax_backward(np.ones(3), np.ones(3), beta)


def test_exported_from_fastconv_functional():
    for f in ALL_FUNCS + ALL_BACKWARDS:
        assert getattr(fastconv.functional, f.__name__) is f
