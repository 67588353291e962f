"""Torch7's local (spatial) subtractive and contrastive normalizations, and their gradients.

Semantics follow ``nn.SpatialSubtractiveNormalization`` and
``nn.SpatialContrastiveNormalization`` (subtractive, then ``nn.SpatialDivisiveNormalization``
with ``thresval = threshold``) for a batch (N, C, H, W) whose C planes are Torch's
``nInputPlane``. The averaging kernel is 2-D (KH, KW), or 1-D (K,) applied separably along the
rows and then the columns as Torch's two convolutions do.
"""
import numpy as np

from .._kernels import _normalization as _kernel
from .._threads import effective_n_threads
from .._validation import (check_array, check_dtype, check_float, check_int, check_out,
                           check_shape)

__all__ = [
    "gaussian_kernel_1d",
    "spatial_subtractive_normalization_forward",
    "spatial_subtractive_normalization_backward",
    "spatial_contrastive_normalization_forward",
    "spatial_contrastive_normalization_backward",
]

_LAYOUT = "(N, C, H, W)"


def gaussian_kernel_1d(size=7, sigma=None, *, dtype=np.float64):
    """Torch's ``image.gaussian1D(size, sigma)``: a 1-D Gaussian of amplitude 1.

    Parameters
    ----------
    size : int
        Number of taps, >= 1 (the normalizations need it odd).
    sigma : float, optional
        Standard deviation *relative to size*, as in Torch (the absolute deviation is
        ``sigma * size`` taps); None uses Torch's default 0.25.
    dtype : numpy dtype
        float32 or float64; match the images the kernel is used with.

    Returns
    -------
    numpy.ndarray
        Shape (size,), peak 1 at the centre for odd sizes. The normalizations rescale the
        kernel to sum 1, so the amplitude does not matter there.

    Math: ``g[i] = exp(-((i - (size-1)/2) / (sigma*size))^2 / 2)``, ``i = 0..size-1``.
    """
    fn = "gaussian_kernel_1d"
    size = check_int(fn, "size", size, minimum=1)
    sigma = 0.25 if sigma is None else check_float(fn, "sigma", sigma, minimum=0.0,
                                                   min_inclusive=False)
    dtype = check_dtype(dtype, fn)
    i = np.arange(size, dtype=np.float64)
    g = np.exp(-0.5 * ((i - (size - 1) / 2) / (sigma * size)) ** 2)
    return g.astype(dtype)


_ABSENT = object()


def _prepare(fn, x, kernel, grad_out=_ABSENT, threshold=None, out=None):
    """Validate, and return (x, grad_out, kn, kn_flipped, kh, kw, separable, threshold, out)."""
    x = check_array(fn, "x", x, ndim=4, layout=_LAYOUT)
    kernel = check_array(fn, "kernel", kernel, ndim=(1, 2), layout="(K,) or (KH, KW)",
                         dtype=x.dtype, dtype_of="x")
    if grad_out is not _ABSENT:
        grad_out = check_array(fn, "grad_out", grad_out, ndim=4, layout=_LAYOUT,
                               dtype=x.dtype, dtype_of="x")
        check_shape(fn, "grad_out", grad_out, x.shape, "(same as x)")
    if any(s % 2 == 0 for s in kernel.shape):
        raise ValueError(f"{fn}: kernel sizes must be odd; got shape {kernel.shape}")
    k64 = kernel.astype(np.float64)
    if not np.all(np.isfinite(k64)) or np.any(k64 < 0):
        raise ValueError(f"{fn}: kernel must be finite and non-negative (an averaging kernel)")
    centre = k64[tuple(s // 2 for s in kernel.shape)]
    if not centre > 0:
        # The centre tap is inside the image for every pixel, so it keeps the border
        # coefficient, the divisor of the local mean, away from zero.
        raise ValueError(f"{fn}: kernel centre tap must be > 0; got {centre}")
    if threshold is not None:
        threshold = check_float(fn, "threshold", threshold, minimum=0.0, min_inclusive=False)
    kn = k64 / k64.sum()
    flipped = kn[::-1] if kn.ndim == 1 else kn[::-1, ::-1]
    separable = kernel.ndim == 1
    kh = kernel.shape[0]
    kw = kernel.shape[0] if separable else kernel.shape[1]
    kn = np.ascontiguousarray(kn.reshape(-1), dtype=x.dtype)
    flipped = np.ascontiguousarray(flipped.reshape(-1), dtype=x.dtype)
    inputs = (x, kernel) if grad_out is _ABSENT else (x, kernel, grad_out)
    out = check_out(fn, out, x.shape, x.dtype, inputs=inputs)
    return x, grad_out, kn, flipped, kh, kw, separable, threshold, out


def spatial_subtractive_normalization_forward(x, kernel, *, out=None, n_threads=None):
    """Subtract the local mean across all channels (Torch's SpatialSubtractiveNormalization).

    The local mean is a zero-padded 'same' correlation with the kernel scaled to sum 1,
    averaged over the C channels (one mean plane per sample, subtracted from every channel)
    and divided by the border coefficient, the same correlation of an all-ones image, so that
    the zero padding does not pull the mean towards 0 near the edges.

    Parameters
    ----------
    x : numpy.ndarray
        Input, float32 or float64, shape (N, C, H, W).
    kernel : numpy.ndarray
        Averaging kernel of x's dtype: 1-D (K,) applied separably (rows, then columns) or
        2-D (KH, KW); odd sizes; finite, non-negative entries with a positive centre tap.
        Only its shape matters, not its scale. It may be larger than the image.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional
        Thread count (see :func:`fastconv.set_num_threads`).

    Returns
    -------
    numpy.ndarray
        y, same shape and dtype as x.

    Shape:
        x (N, C, H, W), kernel (K,) or (KH, KW) -> y (N, C, H, W).

    Math: ``y[n,c] = x[n,c] - corr(sum_c x[n,c], kn) / (C * corr(1, kn))``, ``kn = k / sum k``.
    """
    fn = "spatial_subtractive_normalization_forward"
    x, _, kn, kt, kh, kw, sep, _, out = _prepare(fn, x, kernel, out=out)
    n = effective_n_threads(n_threads)
    if x.size:
        _kernel.subtractive_forward(x, kn, kt, kh, kw, sep, out, n)
    return out


def spatial_subtractive_normalization_backward(x, kernel, grad_out, *, out=None,
                                               n_threads=None):
    """Gradient of :func:`spatial_subtractive_normalization_forward` with respect to x.

    The map is linear, so x only fixes the shape; the result is the transpose applied to
    ``grad_out``.

    Parameters
    ----------
    x : numpy.ndarray
        Forward input, shape (N, C, H, W).
    kernel : numpy.ndarray
        The forward kernel.
    grad_out : numpy.ndarray
        Gradient with respect to y, same shape and dtype as x.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional
        Thread count.

    Returns
    -------
    numpy.ndarray
        grad_x, same shape and dtype as x.

    Shape:
        x (N, C, H, W), grad_out (N, C, H, W) -> grad_x (N, C, H, W).

    Math: ``grad_x[n,c] = g[n,c] - corr^T(sum_c g[n,c] / (C * corr(1, kn)), kn)``.
    """
    fn = "spatial_subtractive_normalization_backward"
    x, grad_out, kn, kt, kh, kw, sep, _, out = _prepare(fn, x, kernel, grad_out=grad_out,
                                                        out=out)
    n = effective_n_threads(n_threads)
    if x.size:
        _kernel.subtractive_backward(grad_out, kn, kt, kh, kw, sep, out, n)
    return out


def spatial_contrastive_normalization_forward(x, kernel, threshold=1e-4, *, out=None,
                                              n_threads=None):
    """Local contrast normalization (Torch's SpatialContrastiveNormalization).

    First the subtractive normalization, z = x - local mean; then Torch's divisive
    normalization: the local standard deviation is the square root of the kernel-weighted
    mean of z^2 over the window and the C channels (zero padded), divided by the border
    coefficient; where it is not above ``threshold`` it is replaced by ``threshold``; every
    channel of z is divided by it.

    Parameters
    ----------
    x : numpy.ndarray
        Input, float32 or float64, shape (N, C, H, W).
    kernel : numpy.ndarray
        Averaging kernel, as for :func:`spatial_subtractive_normalization_forward`.
    threshold : float
        Torch's ``threshold`` (and ``thresval``), > 0: the divisor is
        ``std if std > threshold else threshold``.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional
        Thread count.

    Returns
    -------
    numpy.ndarray
        y, same shape and dtype as x.

    Shape:
        x (N, C, H, W), kernel (K,) or (KH, KW) -> y (N, C, H, W).

    Math: ``z = sub(x)``; ``s = sqrt(corr(sum_c z_c^2, kn) / C) / corr(1, kn)``;
    ``y_c = z_c / (s if s > threshold else threshold)``.
    """
    fn = "spatial_contrastive_normalization_forward"
    x, _, kn, kt, kh, kw, sep, threshold, out = _prepare(fn, x, kernel, threshold=threshold,
                                                         out=out)
    n = effective_n_threads(n_threads)
    if x.size:
        _kernel.contrastive_forward(x, kn, kt, kh, kw, sep, threshold, out, n)
    return out


def spatial_contrastive_normalization_backward(x, kernel, grad_out, threshold=1e-4, *,
                                               out=None, n_threads=None):
    """Gradient of :func:`spatial_contrastive_normalization_forward` with respect to x.

    The local statistics are recomputed from x. The gradient flows through the local mean,
    the local standard deviation and the division; where the threshold value replaced the
    standard deviation, that path carries no gradient (as nn.Threshold).

    Parameters
    ----------
    x : numpy.ndarray
        Forward input, shape (N, C, H, W).
    kernel : numpy.ndarray
        The forward kernel.
    grad_out : numpy.ndarray
        Gradient with respect to y, same shape and dtype as x.
    threshold : float
        The forward threshold.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result.
    n_threads : int, optional
        Thread count.

    Returns
    -------
    numpy.ndarray
        grad_x, same shape and dtype as x.

    Shape:
        x (N, C, H, W), grad_out (N, C, H, W) -> grad_x (N, C, H, W).

    Math: ``grad_x = J_sub^T (g / d + 2 z corr^T(dL/dq, kn) / C)`` with
    ``q = corr(sum_c z_c^2, kn)``, ``dL/dq = [s > threshold] (-sum_c g_c z_c / d^2) / (2 s a^2)``.
    """
    fn = "spatial_contrastive_normalization_backward"
    x, grad_out, kn, kt, kh, kw, sep, threshold, out = _prepare(
        fn, x, kernel, grad_out=grad_out, threshold=threshold, out=out)
    n = effective_n_threads(n_threads)
    if x.size:
        _kernel.contrastive_backward(x, grad_out, kn, kt, kh, kw, sep, threshold, out, n)
    return out
