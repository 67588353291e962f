"""Inverted dropout.

Training multiplies by a mask of 0 and ``1 / (1 - p)``, so the expected activation is
unchanged and evaluation needs no rescaling. The mask is drawn from a caller-owned
``numpy.random.Generator`` (``rng.random(x.shape) >= p``): the same seed gives the same mask,
whatever the dtype or thread count.
"""
import numpy as np

from .._kernels import _activation as _k
from .._threads import effective_n_threads
from .._validation import check_array, check_float, check_out, check_shape

__all__ = ["dropout_forward", "dropout_backward"]


def _check_nd(fn, name, x, dtype=None, dtype_of=None):
    if isinstance(x, np.ndarray) and x.ndim < 1:
        raise ValueError(f"{fn}: {name} must be at least 1-D; got shape {x.shape}")
    return check_array(fn, name, x, dtype=dtype, dtype_of=dtype_of)


def dropout_forward(x, p, rng, *, out=None, n_threads=None):
    """Inverted dropout with drop probability ``p``.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    p : float
        Probability of zeroing an element, ``0 <= p < 1``. ``p = 0`` is the identity (mask
        of ones) and does not advance ``rng``.
    rng : numpy.random.Generator
        Source of the mask: one ``rng.random(x.shape)`` draw (float64) per call.
    out : ndarray, optional
        Buffer of x's shape and dtype for y.
    n_threads : int, optional
        Threads for the masking pass, used above 2**15 elements.

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y = x * mask``.
    mask : ndarray of x's shape and dtype
        ``mask = (u >= p) / (1 - p)`` with ``u = rng.random(x.shape)``; keep it for
        :func:`dropout_backward`.

    Shape:
        x, y, mask: (*) (same shape).
    """
    fn = "dropout_forward"
    xc = _check_nd(fn, "x", x)
    p = check_float(fn, "p", p, minimum=0.0, maximum=1.0, max_inclusive=False)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{fn}: rng must be a numpy.random.Generator; got {type(rng).__name__}")
    y = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if p == 0.0:
        np.copyto(y, xc)
        return y, np.ones(xc.shape, dtype=xc.dtype)
    mask = np.empty(xc.shape, dtype=xc.dtype)
    u = rng.random(xc.shape)
    if xc.size:
        _k.dropout_forward(xc.reshape(-1), u.reshape(-1), p, mask.reshape(-1), y.reshape(-1), n)
    return y, mask


def dropout_backward(grad_out, mask, *, out=None, n_threads=None):
    """Gradient of :func:`dropout_forward` w.r.t. x.

    Parameters
    ----------
    grad_out : ndarray, float32 or float64, ndim >= 1
    mask : ndarray of grad_out's shape and dtype
        The mask returned by :func:`dropout_forward`.
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of grad_out's shape and dtype
        ``grad_x = grad_out * mask``.

    Shape:
        grad_out, mask, grad_x: (*) (same shape).
    """
    fn = "dropout_backward"
    gc = _check_nd(fn, "grad_out", grad_out)
    mc = _check_nd(fn, "mask", mask, dtype=gc.dtype, dtype_of="grad_out")
    check_shape(fn, "mask", mc, gc.shape, "(the shape of grad_out)")
    grad_x = check_out(fn, out, gc.shape, gc.dtype, inputs=(grad_out, mask))
    n = effective_n_threads(n_threads)
    if gc.size:
        _k.mul(gc.reshape(-1), mc.reshape(-1), grad_x.reshape(-1), n)
    return grad_x
