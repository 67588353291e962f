"""Activations: sigmoid, tanh, relu (elementwise), softmax and log-softmax (last axis).

Backward functions take the saved forward *output* ``y`` (not the input), as Chainer's
``retain_outputs`` does: sigmoid, tanh and softmax derivatives are cheapest in terms of y.
Elementwise ops accept any shape with ndim >= 1 and return arrays of that shape.
"""
import numpy as np

from .._kernels import _activation as _k
from .._threads import effective_n_threads
from .._validation import check_array, check_float, check_out, check_shape

__all__ = ["sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
           "relu_forward", "relu_backward", "softmax_forward", "softmax_backward",
           "log_softmax_forward", "log_softmax_backward"]


def _check_nd(fn, name, x, dtype=None, dtype_of=None):
    """check_array for any ndim >= 1 (type, then ndim, then dtype)."""
    if isinstance(x, np.ndarray) and x.ndim < 1:
        raise ValueError(f"{fn}: {name} must be at least 1-D; got shape {x.shape}")
    return check_array(fn, name, x, dtype=dtype, dtype_of=dtype_of)


def _unary(fn, kernel, x, out, n_threads):
    xc = _check_nd(fn, "x", x)
    y = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if xc.size:
        kernel(xc.reshape(-1), y.reshape(-1), n)
    return y


def _backward(fn, kernel, y, grad_out, out, n_threads):
    yc = _check_nd(fn, "y", y)
    gc = _check_nd(fn, "grad_out", grad_out, dtype=yc.dtype, dtype_of="y")
    check_shape(fn, "grad_out", gc, yc.shape, "(the shape of y)")
    grad_x = check_out(fn, out, yc.shape, yc.dtype, inputs=(y, grad_out))
    n = effective_n_threads(n_threads)
    if yc.size:
        kernel(yc.reshape(-1), gc.reshape(-1), grad_x.reshape(-1), n)
    return grad_x


def sigmoid_forward(x, *, out=None, n_threads=None):
    """Logistic sigmoid, elementwise.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    out : ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional
        Threads (see :func:`fastconv.set_num_threads`); used above 2**15 elements.

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y = 1 / (1 + exp(-x))``; stable for any x: ``sigmoid(-inf) = 0``,
        ``sigmoid(+inf) = 1``, NaN stays NaN.

    Shape:
        x: (*), y: (*) (same shape).
    """
    return _unary("sigmoid_forward", _k.sigmoid_forward, x, out, n_threads)


def sigmoid_backward(y, grad_out, *, out=None, n_threads=None):
    """Gradient of the sigmoid from its saved output.

    Parameters
    ----------
    y : ndarray, float32 or float64, ndim >= 1
        Output of :func:`sigmoid_forward`.
    grad_out : ndarray of y's shape and dtype
        Gradient of the loss w.r.t. y.
    out : ndarray, optional
        Buffer for grad_x.
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of y's shape and dtype
        ``grad_x = grad_out * y * (1 - y)``.

    Shape:
        y, grad_out, grad_x: (*) (same shape).
    """
    return _backward("sigmoid_backward", _k.sigmoid_backward, y, grad_out, out, n_threads)


def tanh_forward(x, *, out=None, n_threads=None):
    """Hyperbolic tangent, elementwise.

    float32 uses a vectorized rational approximation evaluated in double: within 0.54 ulp
    (3.3e-8 absolute) of the exact tanh, +-inf -> +-1, NaN -> NaN. float64 uses libm
    ``tanh``.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    out : ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y = tanh(x)``.

    Shape:
        x: (*), y: (*) (same shape).
    """
    return _unary("tanh_forward", _k.tanh_forward, x, out, n_threads)


def tanh_backward(y, grad_out, *, out=None, n_threads=None):
    """Gradient of tanh from its saved output.

    Parameters
    ----------
    y : ndarray, float32 or float64, ndim >= 1
        Output of :func:`tanh_forward`.
    grad_out : ndarray of y's shape and dtype
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of y's shape and dtype
        ``grad_x = grad_out * (1 - y**2)``.

    Shape:
        y, grad_out, grad_x: (*) (same shape).
    """
    return _backward("tanh_backward", _k.tanh_backward, y, grad_out, out, n_threads)


def relu_forward(x, *, out=None, n_threads=None):
    """Rectified linear unit, elementwise.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y = max(x, 0)``; NaN stays NaN.

    Shape:
        x: (*), y: (*) (same shape).
    """
    return _unary("relu_forward", _k.relu_forward, x, out, n_threads)


def relu_backward(y, grad_out, *, out=None, n_threads=None):
    """Gradient of relu from its saved output.

    Parameters
    ----------
    y : ndarray, float32 or float64, ndim >= 1
        Output of :func:`relu_forward`.
    grad_out : ndarray of y's shape and dtype
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of y's shape and dtype
        ``grad_x = grad_out * (y > 0)`` (0, not NaN, where y <= 0 or y is NaN; the
        subgradient at 0 is 0).

    Shape:
        y, grad_out, grad_x: (*) (same shape).
    """
    return _backward("relu_backward", _k.relu_backward, y, grad_out, out, n_threads)


def _rows2d(a):
    return a.reshape(-1, a.shape[-1])


def softmax_forward(x, beta=1.0, *, out=None, n_threads=None):
    """Softmax with inverse temperature ``beta`` over the last axis.

    Each row is shifted by its maximum of ``beta * x`` before ``exp`` (exact, and no
    overflow). A row whose ``beta * x`` holds NaN or +inf, or is all -inf, comes out all NaN
    (``inf - inf``); -inf entries of an otherwise finite row get probability 0.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
        Scores; all leading axes are independent rows.
    beta : float
        Finite inverse temperature; ``beta = 0`` gives the uniform distribution and a
        negative beta favours small scores (the homework's ``exp(-b x)`` is ``beta = -b``).
    out : ndarray, optional
    n_threads : int, optional
        Threads over rows, used above 2**15 elements.

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y[..., i] = exp(beta x[..., i]) / sum_k exp(beta x[..., k])``.

    Shape:
        x: ``(*, K)``, y: ``(*, K)``.
    """
    fn = "softmax_forward"
    xc = _check_nd(fn, "x", x)
    beta = check_float(fn, "beta", beta)
    y = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if xc.size:
        _k.softmax_forward(_rows2d(xc), beta, _rows2d(y), n)
    return y


def softmax_backward(y, grad_out, beta=1.0, *, out=None, n_threads=None):
    """Gradient of :func:`softmax_forward` from its saved output.

    Parameters
    ----------
    y : ndarray, float32 or float64, ndim >= 1
        Output of :func:`softmax_forward` (called with the same ``beta``).
    grad_out : ndarray of y's shape and dtype
    beta : float
        Finite inverse temperature used in the forward pass.
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of y's shape and dtype
        ``grad_x[..., i] = beta y_i (g_i - sum_k g_k y_k)``, i.e. ``J^T g`` with
        ``J_ij = beta y_i (delta_ij - y_j)``.

    Shape:
        y, grad_out, grad_x: ``(*, K)``.
    """
    fn = "softmax_backward"
    yc = _check_nd(fn, "y", y)
    gc = _check_nd(fn, "grad_out", grad_out, dtype=yc.dtype, dtype_of="y")
    check_shape(fn, "grad_out", gc, yc.shape, "(the shape of y)")
    beta = check_float(fn, "beta", beta)
    grad_x = check_out(fn, out, yc.shape, yc.dtype, inputs=(y, grad_out))
    n = effective_n_threads(n_threads)
    if yc.size:
        _k.softmax_backward(_rows2d(yc), _rows2d(gc), beta, _rows2d(grad_x), n)
    return grad_x


def log_softmax_forward(x, *, out=None, n_threads=None):
    """Log-softmax over the last axis, by log-sum-exp.

    Better than ``log(softmax(x))``: that underflows to ``log(0) = -inf`` for scores far
    below the row maximum, while ``(x - max) - log(sum exp(x - max))`` stays finite and
    exact. NaN / +inf rows come out NaN, as in :func:`softmax_forward`.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    y : ndarray of x's shape and dtype
        ``y[..., i] = x[..., i] - log sum_k exp(x[..., k])``.

    Shape:
        x: ``(*, K)``, y: ``(*, K)``.
    """
    fn = "log_softmax_forward"
    xc = _check_nd(fn, "x", x)
    y = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if xc.size:
        _k.log_softmax_forward(_rows2d(xc), _rows2d(y), n)
    return y


def log_softmax_backward(y, grad_out, *, out=None, n_threads=None):
    """Gradient of :func:`log_softmax_forward` from its saved log-probabilities.

    Parameters
    ----------
    y : ndarray, float32 or float64, ndim >= 1
        Output of :func:`log_softmax_forward`.
    grad_out : ndarray of y's shape and dtype
    out : ndarray, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of y's shape and dtype
        ``grad_x[..., i] = g_i - exp(y_i) sum_k g_k``.

    Shape:
        y, grad_out, grad_x: ``(*, K)``.
    """
    fn = "log_softmax_backward"
    yc = _check_nd(fn, "y", y)
    gc = _check_nd(fn, "grad_out", grad_out, dtype=yc.dtype, dtype_of="y")
    check_shape(fn, "grad_out", gc, yc.shape, "(the shape of y)")
    grad_x = check_out(fn, out, yc.shape, yc.dtype, inputs=(y, grad_out))
    n = effective_n_threads(n_threads)
    if yc.size:
        _k.log_softmax_backward(_rows2d(yc), _rows2d(gc), _rows2d(grad_x), n)
    return grad_x
