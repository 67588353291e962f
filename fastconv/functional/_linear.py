"""Fully connected layer: validated wrappers around :mod:`fastconv._kernels._linear`.

``y = x @ weight.T + bias`` with weight shaped (OUT, IN), Torch's layout.
"""
import numpy as np

from .._kernels import _linear
from .._threads import effective_n_threads
from .._validation import check_array, check_out, check_shape
from ._conv import _gradient_buffers

__all__ = ["linear_forward", "linear_backward"]


def _check_linear(fn, x, weight):
    """Validate x (N, IN) and weight (OUT, IN); return them C-contiguous."""
    x = check_array(fn, "x", x, 2, "(N, IN)")
    weight = check_array(fn, "weight", weight, 2, "(OUT, IN)", x.dtype, "x")
    if x.shape[1] < 1 or weight.shape[0] < 1:
        raise ValueError(f"{fn}: IN and OUT must be >= 1; got x shape {x.shape}, "
                         f"weight shape {weight.shape}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{fn}: weight has {weight.shape[1]} input features but x has "
                         f"{x.shape[1]}; weight must have shape ({weight.shape[0]}, "
                         f"{x.shape[1]}) (OUT, IN)")
    return x, weight


def linear_forward(x, weight, bias=None, *, out=None, n_threads=None):
    """Fully connected layer, ``y = x @ weight.T + bias``.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Input batch.
    weight : ndarray, same dtype
        Weight in Torch's layout (out_features, in_features).
    bias : ndarray or None, same dtype
    out : ndarray, optional
        C-contiguous buffer of the output's exact shape and dtype, not overlapping an input.
    n_threads : int or None
        Thread count; see :func:`fastconv.set_num_threads`. Small products run on one thread.

    Returns
    -------
    y : ndarray
        ``out`` when given.

    Shape:
        x (N, IN), weight (OUT, IN), bias (OUT,) -> y (N, OUT).
    """
    fn = "linear_forward"
    x, weight = _check_linear(fn, x, weight)
    if bias is not None:
        bias = check_array(fn, "bias", bias, 1, "(OUT,)", x.dtype, "x")
        check_shape(fn, "bias", bias, (weight.shape[0],), "(OUT,)")
    out = check_out(fn, out, (x.shape[0], weight.shape[0]), x.dtype, (x, weight, bias))
    _linear.linear_forward(x, weight, bias, out, effective_n_threads(n_threads))
    return out


def linear_backward(x, weight, grad_out, *, accumulate_into=None, need_input_grad=True,
                    n_threads=None):
    """Gradients of :func:`linear_forward`.

    ``grad_x = grad_out @ weight``, ``grad_weight = grad_out.T @ x`` and
    ``grad_bias = grad_out.sum(axis=0)``.

    Parameters
    ----------
    x, weight : ndarray
        The forward input and weight (float32 or float64, one dtype).
    grad_out : ndarray
        Gradient of the loss with respect to the forward output.
    accumulate_into : (ndarray, ndarray or None), optional
        ``(grad_weight, grad_bias)`` buffers (C-contiguous, exact shape and dtype) to add the
        gradients to, in place, as a module accumulates its parameter gradients. They are
        returned. grad_bias may be None (a layer without bias).
    need_input_grad : bool
        False skips grad_x (returned as None): the first layer of a network needs no input
        gradient.
    n_threads : int or None
        Thread count; see :func:`fastconv.set_num_threads`.

    Returns
    -------
    grad_x, grad_weight, grad_bias : ndarray
        grad_bias is None when ``accumulate_into[1]`` is None; grad_x is None when
        ``need_input_grad`` is False.

    Shape:
        x (N, IN), weight (OUT, IN), grad_out (N, OUT)
        -> grad_x (N, IN), grad_weight (OUT, IN), grad_bias (OUT,).
    """
    fn = "linear_backward"
    x, weight = _check_linear(fn, x, weight)
    grad_out = check_array(fn, "grad_out", grad_out, 2, "(N, OUT)", x.dtype, "x")
    check_shape(fn, "grad_out", grad_out, (x.shape[0], weight.shape[0]),
                "(the forward output shape)")
    gw, gb, bias_result, accumulate = _gradient_buffers(fn, accumulate_into, weight.shape,
                                                         x.dtype, (x, weight, grad_out))
    grad_x = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    _linear.linear_backward(x, weight, grad_out, grad_x, gw, gb, accumulate,
                            effective_n_threads(n_threads))
    return grad_x, gw, bias_result
