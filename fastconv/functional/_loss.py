"""Losses: NLL, fused log-softmax + NLL, mean squared error, multi-class margin (hinge).

Every forward returns the loss as a Python float, accumulated in float64 in a fixed order
(bitwise identical for any thread count). Every backward takes the scalar ``grad_out``
(dL_total/dL, 1.0 by default) and returns the gradient w.r.t. the float input.

Empty batch: with N = 0 (or an empty ``x`` for MSE) the mean over no samples is defined here
as 0.0, not NaN, and the gradient is an empty array of the input's shape, so a training loop
over a ragged last batch never has to special-case it.
"""
import numpy as np

from .._kernels import _loss as _k
from .._threads import effective_n_threads
from .._validation import check_array, check_float, check_out, check_shape, check_target

__all__ = ["nll_loss_forward", "nll_loss_backward",
           "log_softmax_nll_forward", "log_softmax_nll_backward",
           "mse_loss_forward", "mse_loss_backward",
           "margin_loss_forward", "margin_loss_backward"]


def _scores_and_target(fn, name, x, target):
    xc = check_array(fn, name, x, ndim=2, layout="(N, K)")
    t = check_target(fn, target, xc.shape[0], xc.shape[1])
    return xc, t


def _grad_out(fn, grad_out):
    # Not required finite: a NaN or inf upstream gradient propagates like any NaN input.
    return check_float(fn, "grad_out", grad_out, finite=False)


def _label_smoothing(fn, label_smoothing):
    """``label_smoothing`` as a float in [0, 1), else a clear TypeError or ValueError."""
    return check_float(fn, "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0,
                       max_inclusive=False)


def nll_loss_forward(logp, target, *, label_smoothing=0.0, n_threads=None):
    """Negative log-likelihood of the target classes, averaged over the batch.

    Parameters
    ----------
    logp : ndarray (N, K), float32 or float64
        Log-probabilities, e.g. from :func:`log_softmax_forward`.
    target : ndarray (N,), integer
        Class labels in ``[0, K)``.
    label_smoothing : float
        eps in [0, 1): the target distribution puts ``1 - eps`` on the label and spreads
        ``eps`` evenly over all K classes (PyTorch's ``label_smoothing``, also in what the
        label itself receives). 0 is plain NLL.
    n_threads : int, optional
        Accepted for a uniform signature; this O(N K) sum runs serially.

    Returns
    -------
    float
        ``L = -1/N sum_n [(1 - eps) logp[n, target[n]] + eps/K sum_k logp[n, k]]``, which
        is ``-1/N sum_n logp[n, target[n]]`` for eps = 0; 0.0 when N = 0.

    Shape:
        logp: (N, K), target: (N,) -> scalar.
    """
    fn = "nll_loss_forward"
    lp, t = _scores_and_target(fn, "logp", logp, target)
    eps = _label_smoothing(fn, label_smoothing)
    effective_n_threads(n_threads)
    if lp.shape[0] == 0:
        return 0.0
    if eps:
        return float(_k.nll_smooth_loss_forward(lp, t, eps))
    return float(_k.nll_loss_forward(lp, t))


def nll_loss_backward(logp, target, grad_out=1.0, *, label_smoothing=0.0, out=None,
                      n_threads=None):
    """Gradient of :func:`nll_loss_forward` w.r.t. ``logp``.

    Parameters
    ----------
    logp : ndarray (N, K), float32 or float64
    target : ndarray (N,), integer labels in ``[0, K)``
    grad_out : float
        Gradient of the total loss w.r.t. this loss.
    label_smoothing : float
        eps in [0, 1), as given to :func:`nll_loss_forward`.
    out : ndarray (N, K), optional
    n_threads : int, optional

    Returns
    -------
    grad : ndarray (N, K) of logp's dtype
        ``-grad_out / N * (eps/K + (1 - eps) [k == target[n]])``: for eps = 0,
        ``-grad_out / N`` at ``[n, target[n]]`` and 0 elsewhere.

    Shape:
        logp, grad: (N, K); target: (N,).
    """
    fn = "nll_loss_backward"
    lp, t = _scores_and_target(fn, "logp", logp, target)
    grad_out = _grad_out(fn, grad_out)
    eps = _label_smoothing(fn, label_smoothing)
    grad = check_out(fn, out, lp.shape, lp.dtype, inputs=(logp,))
    n = effective_n_threads(n_threads)
    if grad.size:
        if eps:
            _k.nll_smooth_loss_backward(t, eps, grad_out / lp.shape[0], grad, n)
        else:
            _k.nll_loss_backward(t, grad_out / lp.shape[0], grad, n)
    return grad


def log_softmax_nll_forward(x, target, *, out=None, n_threads=None):
    """Fused log-softmax over classes and NLL (cross-entropy from raw scores).

    Parameters
    ----------
    x : ndarray (N, K), float32 or float64
        Unnormalised scores.
    target : ndarray (N,), integer labels in ``[0, K)``
    out : ndarray (N, K), optional
        Buffer for the log-probabilities.
    n_threads : int, optional
        Threads over rows, used above 2**15 elements.

    Returns
    -------
    loss : float
        ``-1/N sum_n logp[n, target[n]]`` with each row's term computed in float64 from
        the log-sum-exp; 0.0 when N = 0.
    logp : ndarray (N, K) of x's dtype
        ``log_softmax(x)``, saved for :func:`log_softmax_nll_backward`.

    Shape:
        x, logp: (N, K); target: (N,).
    """
    fn = "log_softmax_nll_forward"
    xc, t = _scores_and_target(fn, "x", x, target)
    logp = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if xc.shape[0] == 0:
        return 0.0, logp
    return float(_k.log_softmax_nll_forward(xc, t, logp, n)), logp


def log_softmax_nll_backward(logp, target, grad_out=1.0, *, out=None, n_threads=None):
    """Gradient of :func:`log_softmax_nll_forward` w.r.t. the scores ``x``.

    Parameters
    ----------
    logp : ndarray (N, K), float32 or float64
        Log-probabilities returned by the forward pass.
    target : ndarray (N,), integer labels in ``[0, K)``
    grad_out : float
    out : ndarray (N, K), optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray (N, K) of logp's dtype
        ``(exp(logp) - onehot(target)) / N * grad_out``.

    Shape:
        logp, grad_x: (N, K); target: (N,).
    """
    fn = "log_softmax_nll_backward"
    lp, t = _scores_and_target(fn, "logp", logp, target)
    grad_out = _grad_out(fn, grad_out)
    grad = check_out(fn, out, lp.shape, lp.dtype, inputs=(logp,))
    n = effective_n_threads(n_threads)
    if grad.size:
        _k.log_softmax_nll_backward(lp, t, grad_out / lp.shape[0], grad, n)
    return grad


def _mse_args(fn, x, target):
    if isinstance(x, np.ndarray) and x.ndim < 1:
        raise ValueError(f"{fn}: x must be at least 1-D; got shape {x.shape}")
    xc = check_array(fn, "x", x)
    tc = check_array(fn, "target", target, dtype=xc.dtype, dtype_of="x")
    check_shape(fn, "target", tc, xc.shape, "(the shape of x)")
    return xc, tc


def mse_loss_forward(x, target, *, n_threads=None):
    """Mean squared error over all elements (Torch MSECriterion, sizeAverage).

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    target : ndarray of x's shape and dtype
    n_threads : int, optional
        Threads over fixed chunks of 2**14 elements (the result does not depend on it).

    Returns
    -------
    float
        ``L = 1/x.size sum (x - target)**2``; 0.0 for an empty x.

    Shape:
        x, target: (*) -> scalar.
    """
    fn = "mse_loss_forward"
    xc, tc = _mse_args(fn, x, target)
    n = effective_n_threads(n_threads)
    if xc.size == 0:
        return 0.0
    return float(_k.mse_loss_forward(xc.reshape(-1), tc.reshape(-1), n))


def mse_loss_backward(x, target, grad_out=1.0, *, out=None, n_threads=None):
    """Gradient of :func:`mse_loss_forward` w.r.t. ``x``.

    Parameters
    ----------
    x : ndarray, float32 or float64, ndim >= 1
    target : ndarray of x's shape and dtype
    grad_out : float
    out : ndarray of x's shape and dtype, optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray of x's shape and dtype
        ``2 (x - target) / x.size * grad_out``.

    Shape:
        x, target, grad_x: (*).
    """
    fn = "mse_loss_backward"
    xc, tc = _mse_args(fn, x, target)
    grad_out = _grad_out(fn, grad_out)
    grad = check_out(fn, out, xc.shape, xc.dtype, inputs=(x, target))
    n = effective_n_threads(n_threads)
    if xc.size:
        _k.mse_loss_backward(xc.reshape(-1), tc.reshape(-1), 2.0 * grad_out / xc.size,
                             grad.reshape(-1), n)
    return grad


def margin_loss_forward(x, target, margin=1.0, *, n_threads=None):
    """Multi-class hinge loss (Torch MultiMarginCriterion, p = 1).

    Parameters
    ----------
    x : ndarray (N, K), float32 or float64
        Class scores.
    target : ndarray (N,), integer labels in ``[0, K)``
    margin : float
        Finite margin.
    n_threads : int, optional
        Threads over rows, used above 2**15 elements (the result does not depend on it).

    Returns
    -------
    float
        ``L = 1/N sum_n 1/K sum_{i != t_n} max(0, margin - x[n, t_n] + x[n, i])``;
        0.0 when N = 0. NaN scores give a NaN loss.

    Shape:
        x: (N, K), target: (N,) -> scalar.
    """
    fn = "margin_loss_forward"
    xc, t = _scores_and_target(fn, "x", x, target)
    margin = check_float(fn, "margin", margin)
    n = effective_n_threads(n_threads)
    if xc.shape[0] == 0:
        return 0.0
    return float(_k.margin_loss_forward(xc, t, margin, n))


def margin_loss_backward(x, target, margin=1.0, grad_out=1.0, *, out=None, n_threads=None):
    """Gradient of :func:`margin_loss_forward` w.r.t. ``x``.

    Parameters
    ----------
    x : ndarray (N, K), float32 or float64
    target : ndarray (N,), integer labels in ``[0, K)``
    margin : float
    grad_out : float
    out : ndarray (N, K), optional
    n_threads : int, optional

    Returns
    -------
    grad_x : ndarray (N, K) of x's dtype
        With ``s = grad_out / (N K)`` and ``z_i = margin - x[n, t_n] + x[n, i]``:
        ``grad_x[n, i] = s`` where ``z_i > 0`` (i != t_n), ``grad_x[n, t_n] = -s * #{i: z_i > 0}``,
        0 elsewhere (0 at the kink z = 0, as Torch).

    Shape:
        x, grad_x: (N, K); target: (N,).
    """
    fn = "margin_loss_backward"
    xc, t = _scores_and_target(fn, "x", x, target)
    margin = check_float(fn, "margin", margin)
    grad_out = _grad_out(fn, grad_out)
    grad = check_out(fn, out, xc.shape, xc.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if grad.size:
        _k.margin_loss_backward(xc, t, margin, grad_out / (xc.shape[0] * xc.shape[1]),
                                grad, n)
    return grad
