"""Tests of the fully connected kernels (fastconv.functional.linear_*)."""
import numpy as np
import pytest

from fastconv.functional import linear_backward, linear_forward
from tests.gradcheck import check_adjoint, check_vjp
from tests.reference_conv import linear_reference

TOL = {np.float32: 2e-5, np.float64: 1e-12}

# (N, IN, OUT): batch 1 and odd sizes in one tile, and products large enough to be cut into
# tiles by rows (N >= OUT) and by columns (N < OUT); see _n_tiles in _linear.pyx.
SHAPES = [(1, 7, 3), (5, 1, 1), (3, 11, 4), (128, 1600, 128), (1, 1600, 256), (64, 300, 200),
          (2, 4000, 90)]


def make(shape, dtype=np.float64, seed=0):
    n, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n_in)).astype(dtype),
            rng.standard_normal((n_out, n_in)).astype(dtype),
            rng.standard_normal(n_out).astype(dtype),
            rng.standard_normal((n, n_out)).astype(dtype))


def assert_close(got, ref, dtype):
    ref = np.asarray(ref, dtype=np.float64)
    tol = TOL[dtype] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_forward_and_backward_match_numpy(shape, dtype, n_threads):
    x, weight, bias, grad_out = make(shape, dtype)
    for b in (bias, None):
        y = linear_forward(x, weight, b, n_threads=n_threads)
        assert y.dtype == dtype
        assert_close(y, linear_reference(x, weight, b), dtype)
    gx, gw, gb = linear_backward(x, weight, grad_out, n_threads=n_threads)
    assert gx.dtype == gw.dtype == gb.dtype == dtype
    g64, x64, w64 = (a.astype(np.float64) for a in (grad_out, x, weight))
    assert_close(gx, g64 @ w64, dtype)
    assert_close(gw, g64.T @ x64, dtype)
    assert_close(gb, g64.sum(axis=0), dtype)


@pytest.mark.parametrize("shape", [(1, 7, 3), (3, 5, 4)])
def test_gradients_by_central_differences(shape, rng):
    x, weight, bias, _ = make(shape)
    check_vjp(lambda z: linear_reference(z, weight, bias),
              lambda z, y, r: linear_backward(z, weight, r)[0], x, rng)
    check_vjp(lambda wv: linear_reference(x, wv, bias),
              lambda wv, y, r: linear_backward(x, wv, r)[1], weight, rng)
    check_vjp(lambda bv: linear_reference(x, weight, bv),
              lambda bv, y, r: linear_backward(x, weight, r)[2], bias, rng)


def test_backward_is_the_adjoint_of_forward(rng):
    x, weight, _, grad_out = make((4, 9, 5))
    check_adjoint(lambda u: linear_forward(u, weight), lambda v: linear_backward(x, weight, v)[0],
                  rng.standard_normal(x.shape), rng.standard_normal(grad_out.shape))
    check_adjoint(lambda u: linear_forward(x, u), lambda v: linear_backward(x, weight, v)[1],
                  rng.standard_normal(weight.shape), rng.standard_normal(grad_out.shape))


@pytest.mark.parametrize("shape", SHAPES[3:])
def test_each_thread_count_is_deterministic(shape):
    x, weight, bias, grad_out = make(shape, np.float32)
    for t in (1, 2, 3):
        first = [linear_forward(x, weight, bias, n_threads=t),
                 *linear_backward(x, weight, grad_out, n_threads=t)]
        again = [linear_forward(x, weight, bias, n_threads=t),
                 *linear_backward(x, weight, grad_out, n_threads=t)]
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(3, 11, 4), (64, 300, 200)])
def test_accumulate_into_adds_in_place(shape, rng):
    x, weight, _, grad_out = make(shape)
    _, gw, gb = linear_backward(x, weight, grad_out)
    gw0, gb0 = rng.standard_normal(gw.shape), rng.standard_normal(gb.shape)
    acc_w, acc_b = gw0.copy(), gb0.copy()
    gx, rw, rb = linear_backward(x, weight, grad_out, accumulate_into=(acc_w, acc_b))
    assert rw is acc_w and rb is acc_b
    assert_close(acc_w, gw0 + gw, np.float64)
    assert_close(acc_b, gb0 + gb, np.float64)
    acc_w = gw0.copy()
    _, rw, rb = linear_backward(x, weight, grad_out, accumulate_into=(acc_w, None))
    assert rw is acc_w and rb is None
    assert_close(acc_w, gw0 + gw, np.float64)


def test_empty_batch():
    weight = np.ones((3, 4))
    assert linear_forward(np.ones((0, 4)), weight).shape == (0, 3)
    gx, gw, gb = linear_backward(np.ones((0, 4)), weight, np.ones((0, 3)))
    assert gx.shape == (0, 4)
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)


def test_forward_writes_into_out_and_accepts_views():
    x, weight, bias, _ = make((6, 5, 4))
    out = np.full((3, 4), np.nan)
    y = linear_forward(x[::2], np.asfortranarray(weight), bias, out=out)
    assert y is out
    assert_close(out, linear_reference(x[::2], weight, bias), np.float64)


X = np.zeros((2, 5))
W = np.zeros((3, 5))
GY = np.zeros((2, 3))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: linear_forward(X.tolist(), W), TypeError, "linear_forward: x must be a numpy"),
    (lambda: linear_forward(X[0], W), ValueError, r"x must be 2-D \(N, IN\)"),
    (lambda: linear_forward(X, W.astype(np.float32)), TypeError, "weight must have the same"),
    (lambda: linear_forward(X.astype(np.int64), W), TypeError, "x must have dtype float32"),
    (lambda: linear_forward(X, W[:, :4]), ValueError, "weight has 4 input features but x has 5"),
    (lambda: linear_forward(X, np.zeros((0, 5))), ValueError, "IN and OUT must be >= 1"),
    (lambda: linear_forward(X, W, np.zeros(4)), ValueError, r"bias must have shape \(3,\)"),
    (lambda: linear_forward(X, W, np.zeros((3, 1))), ValueError, "bias must be 1-D"),
    (lambda: linear_forward(X, W, out=np.zeros((2, 4))), ValueError, r"out must have shape"),
    (lambda: linear_forward(X, W, out=np.zeros((2, 3), np.float32)), TypeError, "out must have"),
    (lambda: linear_backward(X, W, GY[:, :2]), ValueError,
     r"linear_backward: grad_out must have shape \(2, 3\)"),
    (lambda: linear_backward(X, W, GY.astype(np.float32)), TypeError,
     "grad_out must have the same dtype as x"),
    (lambda: linear_backward(X, W, GY, accumulate_into=(W.copy(),)), ValueError,
     "accumulate_into must be a pair"),
    (lambda: linear_backward(X, W, GY, accumulate_into=(W, None)), ValueError,
     "must not share memory"),
    (lambda: linear_backward(X, W, GY, accumulate_into=(W.T.copy(), None)), ValueError,
     r"accumulate_into\[0\] must have shape \(3, 5\)"),
    (lambda: linear_backward(X, W, GY, n_threads=1.5), TypeError, "n_threads"),
])
def test_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_without_input_grad_still_accumulates_parameter_grads(dtype, rng):
    x = rng.standard_normal((5, 7)).astype(dtype)
    weight = rng.standard_normal((3, 7)).astype(dtype)
    grad_out = rng.standard_normal((5, 3)).astype(dtype)
    _, gw_ref, gb_ref = linear_backward(x, weight, grad_out)
    gw, gb = np.ones_like(gw_ref), np.ones_like(gb_ref)
    gx, gw2, gb2 = linear_backward(x, weight, grad_out, accumulate_into=(gw, gb),
                                     need_input_grad=False)
    assert gx is None and gw2 is gw and gb2 is gb
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gw, gw_ref + 1, rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, gb_ref + 1, rtol=tol, atol=tol)
