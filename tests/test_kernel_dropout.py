"""Inverted dropout: mask drawn from a numpy Generator, y = x * mask, grad_x = g * mask."""
import numpy as np
import pytest

import fastconv.functional
from fastconv.functional._dropout import dropout_backward, dropout_forward
from tests.gradcheck import check_adjoint, check_vjp

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (3, 5), (1, 1, 1, 1), (2, 3, 5, 7), ((1 << 16) + 9,)]


def ref_mask(seed, shape, p):
    u = np.random.default_rng(seed).random(shape)
    return (u >= p) / (1.0 - p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_forward_matches_reference_mask(dtype, n_threads, shape, p, rng):
    x = rng.standard_normal(shape).astype(dtype)
    y, mask = dropout_forward(x, p, np.random.default_rng(7), n_threads=n_threads)
    assert y.shape == mask.shape == shape and y.dtype == mask.dtype == dtype
    expected = ref_mask(7, shape, p).astype(dtype)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) <= {dtype(0), dtype(1 / (1 - p))}
    np.testing.assert_array_equal(y, x * expected)
    g = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(dropout_backward(g, mask, n_threads=n_threads), g * mask)


def test_same_seed_same_mask_and_dtype_independent(rng):
    x = rng.standard_normal((4, 9))
    _, m1 = dropout_forward(x, 0.3, np.random.default_rng(1))
    _, m2 = dropout_forward(x, 0.3, np.random.default_rng(1))
    _, m3 = dropout_forward(x.astype(np.float32), 0.3, np.random.default_rng(1))
    _, m4 = dropout_forward(x, 0.3, np.random.default_rng(2))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1 != 0, m3 != 0)
    assert np.any(m1 != m4)


def test_generator_state_advances_between_calls():
    gen = np.random.default_rng(3)
    x = np.ones(50)
    _, a = dropout_forward(x, 0.5, gen)
    _, b = dropout_forward(x, 0.5, gen)
    assert np.any(a != b)


def test_keep_fraction_and_mean_preserved():
    x = np.ones(200_000)
    y, mask = dropout_forward(x, 0.25, np.random.default_rng(0))
    assert abs(np.mean(mask != 0) - 0.75) < 0.01
    assert abs(y.mean() - 1.0) < 0.01


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_zero_is_identity_and_leaves_rng_alone(dtype, rng):
    x = rng.standard_normal((3, 4)).astype(dtype)
    gen = np.random.default_rng(5)
    state = gen.bit_generator.state
    y, mask = dropout_forward(x, 0.0, gen)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(mask, np.ones_like(x))
    assert y is not x and mask.dtype == dtype
    assert gen.bit_generator.state == state


@pytest.mark.parametrize("shape", [(1,), (5,), (2, 3), (1, 2, 1, 3)])
def test_gradcheck_and_adjoint(shape, rng):
    """For a fixed mask, dropout is linear: check the VJP and <A u, v> = <u, A^T v>."""
    def fwd(z):
        return dropout_forward(z, 0.4, np.random.default_rng(11))[0]

    _, mask = dropout_forward(np.ones(shape), 0.4, np.random.default_rng(11))
    check_vjp(fwd, lambda z, y, g: dropout_backward(g, mask), rng.standard_normal(shape), rng)
    check_adjoint(fwd, lambda v: dropout_backward(v, mask),
                  rng.standard_normal(shape), rng.standard_normal(shape))


def test_threads_bitwise_identical(rng):
    x = rng.standard_normal((1 << 17) + 3).astype(np.float32)
    y1, m1 = dropout_forward(x, 0.5, np.random.default_rng(9), n_threads=1)
    y2, m2 = dropout_forward(x, 0.5, np.random.default_rng(9), n_threads=2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(m1, m2)
    g = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(dropout_backward(g, m1, n_threads=1),
                                  dropout_backward(g, m1, n_threads=2))


def test_nan_inf_pass_through():
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 8)
    y, mask = dropout_forward(x, 0.5, np.random.default_rng(0))
    kept = mask != 0
    assert np.all(np.isnan(y[kept & np.isnan(x)]))
    assert np.all(np.isinf(y[kept & np.isinf(x)]))
    # IEEE: a dropped NaN or inf times 0 is NaN; a dropped finite value is 0.
    assert np.all(y[~kept & np.isfinite(x)] == 0)


@pytest.mark.parametrize("shape", [(0,), (0, 4), (3, 0)])
def test_empty(shape):
    y, mask = dropout_forward(np.empty(shape), 0.5, np.random.default_rng(0))
    assert y.shape == mask.shape == shape
    assert dropout_backward(np.empty(shape), mask).shape == shape


def test_non_contiguous_and_read_only(rng):
    x = rng.standard_normal((4, 6))
    y, mask = dropout_forward(x, 0.5, np.random.default_rng(4))
    for v in (np.asfortranarray(x), np.ascontiguousarray(x[:, ::-1])[:, ::-1]):
        yv, mv = dropout_forward(v, 0.5, np.random.default_rng(4))
        np.testing.assert_array_equal(yv, y)
        np.testing.assert_array_equal(mv, mask)
        np.testing.assert_array_equal(dropout_backward(v, np.asfortranarray(mask)), x * mask)
    big = np.zeros((4, 12))
    big[:, ::2] = x
    np.testing.assert_array_equal(dropout_forward(big[:, ::2], 0.5, np.random.default_rng(4))[0],
                                  y)
    ro = x.copy()
    ro.flags.writeable = False
    mask.flags.writeable = False
    np.testing.assert_array_equal(dropout_forward(ro, 0.5, np.random.default_rng(4))[0], y)
    np.testing.assert_array_equal(dropout_backward(ro, mask), x * mask)


def test_out_buffers(rng):
    x = rng.standard_normal((3, 4))
    out = np.empty_like(x)
    y, mask = dropout_forward(x, 0.5, np.random.default_rng(0), out=out)
    assert y is out
    assert dropout_forward(x, 0.0, np.random.default_rng(0), out=out)[0] is out
    g = np.empty_like(x)
    assert dropout_backward(x, mask, out=g) is g
    with pytest.raises(ValueError, match="dropout_forward: out must have shape"):
        dropout_forward(x, 0.5, np.random.default_rng(0), out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="dropout_forward: out must have dtype"):
        dropout_forward(x, 0.5, np.random.default_rng(0), out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="share memory"):
        dropout_forward(x, 0.5, np.random.default_rng(0), out=x)
    with pytest.raises(ValueError, match="share memory"):
        dropout_backward(x, mask, out=mask)


@pytest.mark.parametrize("p, exc, msg", [(1.0, ValueError, r"p must be < 1.0"),
                                         (1.5, ValueError, r"p must be < 1.0"),
                                         (-0.1, ValueError, r"p must be >= 0.0"),
                                         (np.nan, ValueError, "p must be finite"),
                                         ("0.5", TypeError, "p must be a real number"),
                                         (None, TypeError, "p must be a real number")])
def test_bad_p(p, exc, msg):
    with pytest.raises(exc, match=f"dropout_forward: {msg}"):
        dropout_forward(np.ones(3), p, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [None, 0, np.random.RandomState(0), np.random.PCG64(0)])
def test_bad_rng(bad):
    with pytest.raises(TypeError, match="dropout_forward: rng must be a numpy.random.Generator"):
        dropout_forward(np.ones(3), 0.5, bad)


def test_array_validation():
    with pytest.raises(TypeError, match="dropout_forward: x must be a numpy.ndarray"):
        dropout_forward([1.0], 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dropout_forward: x must be at least 1-D"):
        dropout_forward(np.ones(()), 0.5, np.random.default_rng(0))
    with pytest.raises(TypeError, match="dropout_forward: x must have dtype float32 or float64"):
        dropout_forward(np.ones(3, np.int32), 0.5, np.random.default_rng(0))
    g = np.ones((2, 3))
    with pytest.raises(TypeError, match="dropout_backward: mask must be a numpy.ndarray"):
        dropout_backward(g, 1.0)
    with pytest.raises(ValueError, match="dropout_backward: grad_out must be at least 1-D"):
        dropout_backward(np.ones(()), np.ones(()))
    with pytest.raises(TypeError, match="mask must have the same dtype as grad_out"):
        dropout_backward(g, g.astype(np.float32))
    with pytest.raises(ValueError, match=r"dropout_backward: mask must have shape \(2, 3\)"):
        dropout_backward(g, np.ones((3, 2)))
    with pytest.raises(ValueError, match="n_threads must be a non-zero"):
        dropout_backward(g, g, n_threads=0)


def test_exported_from_fastconv_functional():
    assert fastconv.functional.dropout_forward is dropout_forward
    assert fastconv.functional.dropout_backward is dropout_backward
