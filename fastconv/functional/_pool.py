"""Pooling: max pooling with arg-max indices, Lp (L2) pooling and average pooling.

Both follow Torch7 (SpatialMaxPooling, SpatialLPPooling): no padding, floor mode, and Lp pooling
*sums* x^p over the window (it does not average).
"""
import numpy as np

from .._kernels import _pool
from .._threads import effective_n_threads
from .._validation import as_pair, check_array, check_float, check_out, check_shape

__all__ = ["max_pool2d_forward", "max_pool2d_backward",
           "lp_pool2d_forward", "lp_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward"]

_NCHW = "(N, C, H, W)"
_NCHW_OUT = "(N, C, OH, OW)"


def _window(fn, h, w, kernel_size, stride):
    """Validate kernel/stride against an (h, w) input; return (kh, kw, sh, sw, oh, ow)."""
    kh, kw = as_pair(fn, "kernel_size", kernel_size, 1)
    sh, sw = (kh, kw) if stride is None else as_pair(fn, "stride", stride, 1)
    if kh > h or kw > w:
        raise ValueError(f"{fn}: kernel_size ({kh}, {kw}) is larger than the input "
                         f"(H, W) = ({h}, {w}); pooling has no padding")
    return kh, kw, sh, sw, (h - kh) // sh + 1, (w - kw) // sw + 1


def _check_p(fn, p):
    return check_float(fn, "p", p, minimum=1.0)


def max_pool2d_forward(x, kernel_size, stride=None, *, return_indices=False, out=None,
                       n_threads=None):
    """2-D max pooling over NCHW planes (Torch7 SpatialMaxPooling: no padding, floor mode).

    ``y[n,c,i,j] = max_{u<KH, v<KW} x[n,c,i*SH+u, j*SW+v]``

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
        Input. Any memory layout; non-contiguous views are copied.
    kernel_size : int or (int, int)
        Window (KH, KW), each >= 1 and no larger than the input.
    stride : int or (int, int), optional
        Step (SH, SW), each >= 1. Default: ``kernel_size`` (non-overlapping windows).
    return_indices : bool, default False
        Also return the arg-max indices that :func:`max_pool2d_backward` needs.
    out : ndarray of shape (N, C, OH, OW), optional
        C-contiguous, writeable buffer of x's dtype for ``y``.
    n_threads : int, optional
        Threads (see :func:`fastconv.set_num_threads`); planes are split between them.

    Returns
    -------
    y : ndarray of shape (N, C, OH, OW)
        Window maxima. A NaN in a window propagates to y.
    indices : ndarray of np.intp, shape (N, C, OH, OW)
        Only when ``return_indices``: the flat offset ``i*W + j`` of each maximum inside its
        (n, c) input plane. Ties go to the first maximum in row-major window order; with NaNs,
        to the first NaN.

    Shape:
        ``OH = (H - KH) // SH + 1``, ``OW = (W - KW) // SW + 1``.
    """
    fn = "max_pool2d_forward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    n, c, h, w = x.shape
    kh, kw, sh, sw, oh, ow = _window(fn, h, w, kernel_size, stride)
    shape = (n, c, oh, ow)
    y = check_out(fn, out, shape, x.dtype, inputs=(x,))
    indices = np.empty(shape, dtype=np.intp) if return_indices else None
    nt = effective_n_threads(n_threads)
    if x.size:
        _pool.max_pool2d_forward(x, y, indices, kh, kw, sh, sw, nt)
    return (y, indices) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape, *, out=None, n_threads=None):
    """Gradient of :func:`max_pool2d_forward`: scatter-add of grad_out to the arg-max.

    ``grad_x[n,c].flat[indices[n,c,i,j]] += grad_out[n,c,i,j]``, zero elsewhere. Overlapping
    windows (stride < kernel) that share a maximum add up.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, OH, OW), float32 or float64
        Gradient with respect to the pooled output y.
    indices : ndarray of np.intp, shape (N, C, OH, OW)
        The arg-max returned by ``max_pool2d_forward(..., return_indices=True)``. Every value
        must lie in ``[0, H*W)``.
    input_shape : tuple of 4 ints
        Shape (N, C, H, W) of the forward input x.
    out : ndarray of shape (N, C, H, W), optional
        C-contiguous, writeable buffer of grad_out's dtype for ``grad_x``. Its contents are
        unspecified if the call raises because of an out-of-range index.
    n_threads : int, optional
        Threads; planes are split between them.

    Returns
    -------
    grad_x : ndarray of shape (N, C, H, W)

    Shape:
        grad_out, indices: (N, C, OH, OW) with ``OH = (H - KH) // SH + 1`` (any OH, OW are
        accepted: the indices alone define the map). grad_x: (N, C, H, W).
    """
    fn = "max_pool2d_backward"
    grad_out = check_array(fn, "grad_out", grad_out, ndim=4, layout=_NCHW_OUT)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{fn}: indices must be a numpy.ndarray; got {type(indices).__name__}")
    if indices.ndim != 4:
        raise ValueError(f"{fn}: indices must be 4-D {_NCHW_OUT}; got shape {indices.shape}")
    if indices.dtype != np.intp:
        raise TypeError(f"{fn}: indices must have dtype {np.dtype(np.intp)} (np.intp); "
                        f"got {indices.dtype}")
    check_shape(fn, "indices", indices, grad_out.shape, "like grad_out")
    shape = _input_shape(fn, input_shape)
    if shape[:2] != grad_out.shape[:2]:
        raise ValueError(f"{fn}: input_shape (N, C) must match grad_out's "
                         f"{grad_out.shape[:2]}; got {shape[:2]}")
    indices = np.ascontiguousarray(indices)
    grad_x = check_out(fn, out, shape, grad_out.dtype, inputs=(grad_out, indices))
    nt = effective_n_threads(n_threads)
    if grad_x.size == 0:
        return grad_x
    if grad_out.size == 0:
        grad_x[...] = 0
        return grad_x
    bad = _pool.max_pool2d_backward(grad_out, indices, grad_x, nt)
    if bad:
        hw = shape[2] * shape[3]
        first = indices[(indices < 0) | (indices >= hw)].flat[0]
        raise ValueError(f"{fn}: indices must lie in [0, H*W) = [0, {hw}); got {bad} "
                         f"out-of-range value(s), e.g. {first}")
    return grad_x


def _input_shape(fn, input_shape):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"{fn}: input_shape must be a tuple (N, C, H, W); got {input_shape!r}")
    try:
        dims = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: input_shape must hold ints; got {input_shape!r}") from None
    if any(d < 0 for d in dims) or dims[2] < 1 or dims[3] < 1:
        raise ValueError(f"{fn}: input_shape must have N, C >= 0 and H, W >= 1; "
                         f"got {input_shape!r}")
    return dims


def lp_pool2d_forward(x, p, kernel_size, stride=None, *, out=None, n_threads=None):
    """2-D power-average pooling (Torch7 SpatialLPPooling): the p-norm of each window.

    ``y[n,c,i,j] = (Σ_{u<KH, v<KW} x[n,c,i*SH+u, j*SW+v]^p)^(1/p)`` (a sum, not a mean);
    p = 2 is L2 pooling, ``sqrt(Σ x²)``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
        Input. For non-integer p, negative entries give NaN (``pow`` semantics, as Torch).
    p : float
        Power, finite and >= 1.
    kernel_size : int or (int, int)
        Window (KH, KW), each >= 1 and no larger than the input.
    stride : int or (int, int), optional
        Step (SH, SW), each >= 1. Default: ``kernel_size``.
    out : ndarray of shape (N, C, OH, OW), optional
        C-contiguous, writeable buffer of x's dtype for ``y``.
    n_threads : int, optional
        Threads; planes are split between them.

    Returns
    -------
    y : ndarray of shape (N, C, OH, OW)
        Keep it: :func:`lp_pool2d_backward` needs it.

    Shape:
        ``OH = (H - KH) // SH + 1``, ``OW = (W - KW) // SW + 1``.
    """
    fn = "lp_pool2d_forward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    n, c, h, w = x.shape
    p = _check_p(fn, p)
    kh, kw, sh, sw, oh, ow = _window(fn, h, w, kernel_size, stride)
    y = check_out(fn, out, (n, c, oh, ow), x.dtype, inputs=(x,))
    nt = effective_n_threads(n_threads)
    if x.size:
        _pool.lp_pool2d_forward(x, y, p, kh, kw, sh, sw, nt)
    return y


def lp_pool2d_backward(x, y, grad_out, p, kernel_size, stride=None, *, out=None,
                       n_threads=None):
    """Gradient of :func:`lp_pool2d_forward` with respect to x.

    ``grad_x[a,b] = Σ_{windows (i,j) ∋ (a,b)} grad_out[i,j] · x[a,b]^(p-1) · y[i,j]^(1-p)``
    (per (n, c) plane). Where ``y == 0`` and p > 1 the factor y^(1-p) is infinite; that window
    then contributes 0 to the gradient, the minimum-norm subgradient (for p = 2 and x = 0, the
    norm's subdifferential at 0 contains 0). For p = 1 the map is linear and no such case arises.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
        The forward input.
    y : ndarray of shape (N, C, OH, OW), same dtype
        The forward output ``lp_pool2d_forward(x, p, kernel_size, stride)``.
    grad_out : ndarray of shape (N, C, OH, OW), same dtype
        Gradient with respect to y.
    p, kernel_size, stride
        As given to the forward call.
    out : ndarray of shape (N, C, H, W), optional
        C-contiguous, writeable buffer of x's dtype for ``grad_x``.
    n_threads : int, optional
        Threads; planes are split between them.

    Returns
    -------
    grad_x : ndarray of shape (N, C, H, W)

    Shape:
        y, grad_out: (N, C, OH, OW) with ``OH = (H - KH) // SH + 1``,
        ``OW = (W - KW) // SW + 1``; grad_x: like x.
    """
    fn = "lp_pool2d_backward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    y = check_array(fn, "y", y, ndim=4, layout=_NCHW_OUT, dtype=x.dtype, dtype_of="x")
    grad_out = check_array(fn, "grad_out", grad_out, ndim=4, layout=_NCHW_OUT,
                           dtype=x.dtype, dtype_of="x")
    check_shape(fn, "grad_out", grad_out, y.shape, "like y")
    n, c, h, w = x.shape
    p = _check_p(fn, p)
    kh, kw, sh, sw, oh, ow = _window(fn, h, w, kernel_size, stride)
    check_shape(fn, "y", y, (n, c, oh, ow), _NCHW_OUT)
    grad_x = check_out(fn, out, x.shape, x.dtype, inputs=(x, y, grad_out))
    nt = effective_n_threads(n_threads)
    if x.size:
        _pool.lp_pool2d_backward(x, y, grad_out, grad_x, p, kh, kw, sh, sw, nt)
    return grad_x


def avg_pool2d_forward(x, kernel_size, stride=None, *, out=None, n_threads=None):
    """2-D average pooling (PyTorch AvgPool2d with no padding, floor mode).

    ``y[n,c,i,j] = (1/(KH*KW)) Σ_{u<KH, v<KW} x[n,c,i*SH+u, j*SW+v]``

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
        Input. Any memory layout; non-contiguous views are copied.
    kernel_size : int or (int, int)
        Window (KH, KW), each >= 1 and no larger than the input.
    stride : int or (int, int), optional
        Step (SH, SW), each >= 1. Default: ``kernel_size``.
    out : ndarray of shape (N, C, OH, OW), optional
        C-contiguous, writeable buffer of x's dtype for ``y``.
    n_threads : int, optional
        Threads; planes are split between them.

    Returns
    -------
    y : ndarray of shape (N, C, OH, OW)

    Shape:
        ``OH = (H - KH) // SH + 1``, ``OW = (W - KW) // SW + 1``.
    """
    fn = "avg_pool2d_forward"
    x = check_array(fn, "x", x, ndim=4, layout=_NCHW)
    n, c, h, w = x.shape
    kh, kw, sh, sw, oh, ow = _window(fn, h, w, kernel_size, stride)
    y = check_out(fn, out, (n, c, oh, ow), x.dtype, inputs=(x,))
    nt = effective_n_threads(n_threads)
    if x.size:
        _pool.avg_pool2d_forward(x, y, kh, kw, sh, sw, nt)
    return y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, *, out=None,
                        n_threads=None):
    """Gradient of :func:`avg_pool2d_forward` with respect to x.

    ``grad_x[n,c,a,b] = (1/(KH*KW)) Σ_{windows (i,j) ∋ (a,b)} grad_out[n,c,i,j]``; pixels
    that no window covers (floor mode) get 0.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C, OH, OW), float32 or float64
        Gradient with respect to the pooled output.
    input_shape : tuple of 4 ints
        Shape (N, C, H, W) of the forward input.
    kernel_size, stride
        As given to the forward call.
    out : ndarray of shape (N, C, H, W), optional
        C-contiguous, writeable buffer of grad_out's dtype for ``grad_x``.
    n_threads : int, optional
        Threads; planes are split between them.

    Returns
    -------
    grad_x : ndarray of shape (N, C, H, W)

    Shape:
        grad_out: (N, C, OH, OW), the forward output shape of input_shape.
    """
    fn = "avg_pool2d_backward"
    grad_out = check_array(fn, "grad_out", grad_out, ndim=4, layout=_NCHW_OUT)
    n, c, h, w = _input_shape(fn, input_shape)
    kh, kw, sh, sw, oh, ow = _window(fn, h, w, kernel_size, stride)
    check_shape(fn, "grad_out", grad_out, (n, c, oh, ow), "(the forward output shape)")
    grad_x = check_out(fn, out, (n, c, h, w), grad_out.dtype, inputs=(grad_out,))
    nt = effective_n_threads(n_threads)
    if grad_x.size:
        _pool.avg_pool2d_backward(grad_out, grad_x, kh, kw, sh, sw, nt)
    return grad_x
