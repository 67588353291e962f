"""Batch normalization: validated wrappers around :mod:`fastconv._kernels._batchnorm`.

PyTorch's semantics (``torch.nn.functional.batch_norm`` on NCHW input): in training each
channel is normalized by the batch mean and the *biased* batch variance, and the running
statistics move by ``running = (1 - momentum) * running + momentum * batch`` with the
*unbiased* batch variance; in evaluation the running statistics normalize.
"""
import numpy as np

from .._kernels import _batchnorm
from .._threads import effective_n_threads
from .._validation import check_array, check_float, check_out, check_shape
from ._conv import _gradient_buffers

__all__ = ["batch_norm2d_forward", "batch_norm2d_backward"]

_NCHW = "(N, C, H, W)"


def _check_stats(fn, name, a, c):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray; got {type(a).__name__}")
    check_shape(fn, name, a, (c,), "(C,)")
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: {name} must have a float dtype; got {a.dtype}")


def batch_norm2d_forward(x, weight, bias, running_mean, running_var, training=True,
                         momentum=0.1, eps=1e-5, *, out=None, n_threads=None):
    """Batch normalization of an NCHW batch, per channel.

    ``y = weight * (x - mean) / sqrt(var + eps) + bias``

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64
    weight, bias : ndarray (C,), x's dtype
        The affine transform (PyTorch's gamma and beta).
    running_mean, running_var : ndarray (C,), float
        Running statistics: read in evaluation; in training updated in place with the
        batch's mean and unbiased variance (``momentum`` weights the batch).
    training : bool
        Normalize by the batch's statistics (True) or the running ones (False).
    momentum : float in [0, 1]
    eps : float > 0
    out : ndarray (N, C, H, W), optional
    n_threads : int, optional

    Returns
    -------
    y : ndarray (N, C, H, W)
    mean, var : ndarray (C,), float64
        The statistics that normalized x (batch mean and biased variance in training, copies
        of the running ones in evaluation): pass them to :func:`batch_norm2d_backward`.

    Shape:
        x, y: (N, C, H, W); weight, bias, running statistics: (C,). Training needs
        N*H*W >= 2 (a variance of one value is undefined, as in PyTorch).
    """
    fn = "batch_norm2d_forward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    c = x.shape[1]
    weight = check_array(fn, "weight", weight, ndim=1, layout="(C,)", dtype=x.dtype,
                         dtype_of="x")
    bias = check_array(fn, "bias", bias, ndim=1, layout="(C,)", dtype=x.dtype, dtype_of="x")
    check_shape(fn, "weight", weight, (c,), "(C,)")
    check_shape(fn, "bias", bias, (c,), "(C,)")
    _check_stats(fn, "running_mean", running_mean, c)
    _check_stats(fn, "running_var", running_var, c)
    momentum = check_float(fn, "momentum", momentum, minimum=0.0, maximum=1.0)
    eps = check_float(fn, "eps", eps, minimum=0.0, min_inclusive=False)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    if training and m < 2:
        raise ValueError(f"{fn}: training needs more than one value per channel "
                         f"(N*H*W >= 2); got x of shape {x.shape}")
    if training and not (running_mean.flags.writeable and running_var.flags.writeable):
        raise ValueError(f"{fn}: running_mean and running_var must be writeable in training")
    y = check_out(fn, out, x.shape, x.dtype, inputs=(x, weight, bias, running_mean,
                                                     running_var))
    if training:
        mean, var = np.empty(c), np.empty(c)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
        if np.any(var + eps <= 0):
            raise ValueError(f"{fn}: running_var + eps must be > 0")
    nt = effective_n_threads(n_threads)
    if x.size:
        _batchnorm.batch_norm2d_forward(x, weight, bias, mean, var, y, training, eps, nt)
    if training and x.size:
        update_running_stats(running_mean, running_var, mean, var, m, momentum)
    return y, mean, var


def update_running_stats(running_mean, running_var, mean, var, m, momentum):
    """PyTorch's update: the unbiased variance (var * M / (M - 1)) enters the running one."""
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean
    running_var *= 1.0 - momentum
    running_var += momentum * var * (m / (m - 1))


def batch_norm2d_backward(x, weight, grad_out, mean, var, training=True, eps=1e-5, *,
                          out=None, accumulate_into=None, need_input_grad=True,
                          n_threads=None):
    """Gradients of :func:`batch_norm2d_forward` with respect to x, weight and bias.

    With ``xhat = (x - mean) / sqrt(var + eps)``: ``grad_bias = Σ grad_out``,
    ``grad_weight = Σ grad_out * xhat`` (sums over N, H, W) and, in training,
    ``grad_x = weight / sqrt(var + eps) / M * (M grad_out - grad_bias - xhat grad_weight)``
    with M = N*H*W; in evaluation ``grad_x = weight / sqrt(var + eps) * grad_out``.

    Parameters
    ----------
    x, weight : ndarray
        The forward input and weight.
    grad_out : ndarray (N, C, H, W)
    mean, var : ndarray (C,)
        As returned by the forward call.
    training, eps :
        As given to the forward call.
    out : ndarray (N, C, H, W), optional
        Buffer for grad_x.
    accumulate_into : (ndarray, ndarray), optional
        ``(grad_weight, grad_bias)`` to add the parameter gradients to, in place.
    need_input_grad : bool
        False skips grad_x (returned as None).
    n_threads : int, optional

    Returns
    -------
    grad_x, grad_weight, grad_bias : ndarray

    Shape:
        x, grad_out, grad_x: (N, C, H, W); the rest (C,).
    """
    fn = "batch_norm2d_backward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    c = x.shape[1]
    weight = check_array(fn, "weight", weight, ndim=1, layout="(C,)", dtype=x.dtype,
                         dtype_of="x")
    check_shape(fn, "weight", weight, (c,), "(C,)")
    grad_out = check_array(fn, "grad_out", grad_out, ndim=4, layout=_NCHW, dtype=x.dtype,
                           dtype_of="x")
    check_shape(fn, "grad_out", grad_out, x.shape, "(like x)")
    _check_stats(fn, "mean", mean, c)
    _check_stats(fn, "var", var, c)
    eps = check_float(fn, "eps", eps, minimum=0.0, min_inclusive=False)
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    var = np.ascontiguousarray(var, dtype=np.float64)
    if np.any(var + eps <= 0):
        raise ValueError(f"{fn}: var + eps must be > 0")
    inputs = (x, weight, grad_out)
    grad_x = check_out(fn, out, x.shape, x.dtype, inputs) if need_input_grad else None
    gw, gb, bias_result, accumulate = _gradient_buffers(fn, accumulate_into, (c,), x.dtype,
                                                         inputs + (grad_x,))
    nt = effective_n_threads(n_threads)
    if x.size:
        _batchnorm.batch_norm2d_backward(x, grad_out, weight, mean, var, grad_x, gw, gb,
                                         bool(training), accumulate, eps, nt)
    elif not accumulate:
        gw[...] = 0
        gb[...] = 0
    return grad_x, gw, bias_result
