"""Batch normalization kernels against a NumPy reference of PyTorch's semantics."""
import numpy as np
import pytest

import fastconv.functional as F

from .gradcheck import check_vjp, numerical_gradient, relative_error


def reference_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """torch.nn.functional.batch_norm on NCHW, written out: biased batch variance to
    normalize, unbiased batch variance into the running variance."""
    x64 = x.astype(np.float64)
    if training:
        mean = x64.mean(axis=(0, 2, 3))
        var = x64.var(axis=(0, 2, 3))
        m = x.shape[0] * x.shape[2] * x.shape[3]
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        new_mean, new_var = running_mean, running_var
    xhat = (x64 - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + eps)
    y = weight[None, :, None, None] * xhat + bias[None, :, None, None]
    return y, new_mean, new_var


SHAPES = [(4, 3, 5, 5), (1, 2, 3, 1), (2, 20, 30, 30), (7, 1, 1, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_forward_matches_reference(rng, shape, dtype, training, n_threads):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    weight = rng.standard_normal(c).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    y_ref, rm_ref, rv_ref = reference_forward(x, weight, bias, rm.copy(), rv.copy(), training,
                                              0.1, 1e-5)
    y, mean, var = F.batch_norm2d_forward(x, weight, bias, rm, rv, training, 0.1, 1e-5,
                                          n_threads=n_threads)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(rm, rm_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, rv_ref, rtol=tol, atol=tol)
    assert y.dtype == dtype and rm.dtype == dtype
    if training:
        np.testing.assert_allclose(var, x.astype(np.float64).var(axis=(0, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES[:2] + SHAPES[3:])
@pytest.mark.parametrize("training", [True, False])
def test_backward_matches_finite_differences(rng, shape, training):
    c = shape[1]
    x = rng.standard_normal(shape)
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    eps = 1e-5

    def forward(z, w=weight, b=bias):
        return F.batch_norm2d_forward(z, w, b, rm.copy(), rv.copy(), training, 0.1, eps)[0]

    _, mean, var = F.batch_norm2d_forward(x, weight, bias, rm.copy(), rv.copy(), training,
                                          0.1, eps)
    check_vjp(forward, lambda z, y, g: F.batch_norm2d_backward(
        z, weight, g, mean, var, training, eps)[0], x, rng)
    r = rng.standard_normal(shape)
    _, gw, gb = F.batch_norm2d_backward(x, weight, r, mean, var, training, eps)
    num_w = numerical_gradient(lambda w: float(np.sum(forward(x, w=w) * r)), weight)
    num_b = numerical_gradient(lambda b: float(np.sum(forward(x, b=b) * r)), bias)
    assert relative_error(gw, num_w) < 1e-6 and relative_error(gb, num_b) < 1e-6


def test_backward_accumulates_and_skips_grad_x(rng):
    x = rng.standard_normal((3, 2, 4, 4))
    w = rng.standard_normal(2)
    g = rng.standard_normal(x.shape)
    _, mean, var = F.batch_norm2d_forward(x, w, np.zeros(2), np.zeros(2), np.ones(2))
    gx, gw, gb = F.batch_norm2d_backward(x, w, g, mean, var)
    acc = (np.ones(2), np.ones(2))
    none, gw2, gb2 = F.batch_norm2d_backward(x, w, g, mean, var, accumulate_into=acc,
                                             need_input_grad=False)
    assert none is None and gw2 is acc[0]
    np.testing.assert_allclose(gw2, gw + 1, rtol=1e-14)
    np.testing.assert_allclose(gb2, gb + 1, rtol=1e-14)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.batch_norm2d_forward(np.zeros((1, 2, 1, 1)), np.ones(2), np.zeros(2),
                                    np.zeros(2), np.ones(2)), ValueError, "more than one"),
    (lambda: F.batch_norm2d_forward(np.zeros((2, 2, 3, 3)), np.ones(3), np.zeros(2),
                                    np.zeros(2), np.ones(2)), ValueError, "weight"),
    (lambda: F.batch_norm2d_forward(np.zeros((2, 2, 3, 3)), np.ones(2, np.float32),
                                    np.zeros(2), np.zeros(2), np.ones(2)), TypeError, "dtype"),
    (lambda: F.batch_norm2d_forward(np.zeros((2, 2, 3, 3)), np.ones(2), np.zeros(2),
                                    np.zeros(3), np.ones(2)), ValueError, "running_mean"),
    (lambda: F.batch_norm2d_forward(np.zeros((2, 2, 3, 3)), np.ones(2), np.zeros(2),
                                    np.zeros(2), np.ones(2), momentum=2), ValueError,
     "momentum"),
    (lambda: F.batch_norm2d_forward(np.zeros((2, 2, 3, 3)), np.ones(2), np.zeros(2),
                                    np.zeros(2), -np.ones(2), training=False), ValueError,
     "running_var"),
    (lambda: F.batch_norm2d_backward(np.zeros((2, 2, 3, 3)), np.ones(2),
                                     np.zeros((2, 2, 3, 4)), np.zeros(2), np.ones(2)),
     ValueError, "grad_out"),
])
def test_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
