"""Plain NumPy (and SciPy) versions of fastconv's kernels, the baselines of ``bench/kernels.py``.

They are meant to be what a competent NumPy programmer would write, not strawmen: whole-array
operations, one BLAS call per convolution or linear layer, no Python loop over the batch or the
pixels. Each ``*_forward`` returns ``(y, saved)``, where ``saved`` is what its ``*_backward``
needs, so that the forward pass of a baseline does the same bookkeeping as fastconv's (e.g. max
pooling computes its arg-max in the forward pass, as ``max_pool2d_forward(return_indices=True)``
does). Only the homework's configurations are covered (stride 1 and no padding for the
convolution; non-overlapping windows that tile the input for pooling).

NumPy's BLAS runs with however many threads the caller allows (``bench/kernels.py`` pins it with
threadpoolctl); everything else here is single-threaded, as NumPy is.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage, special

__all__ = [
    "conv2d_forward", "conv2d_backward", "linear_forward", "linear_backward",
    "max_pool2d_forward", "max_pool2d_backward", "lp_pool2d_forward", "lp_pool2d_backward",
    "tanh_forward", "tanh_backward", "sigmoid_forward", "sigmoid_backward",
    "relu_forward", "relu_backward", "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
    "log_softmax_nll_forward", "log_softmax_nll_backward",
    "rotate_forward", "rotate_backward",
    "subtractive_normalization_forward", "subtractive_normalization_backward",
    "dropout_forward", "dropout_backward",
]


# --------------------------------------------------------------------------------------------
# Convolution (stride 1, no padding) by im2col + one GEMM
# --------------------------------------------------------------------------------------------

def _im2col(x, kh, kw):
    """Columns (C*KH*KW, N*OH*OW) of x (N, C, H, W): row (c, u, v), column (n, i, j)."""
    n, c, h, w = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))       # (N, C, OH, OW, KH, KW)
    # The one copy of the im2col method; this layout makes every product below a single GEMM.
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)


def conv2d_forward(x, weight, bias):
    """``y[n,f,i,j] = bias[f] + sum_{c,u,v} weight[f,c,u,v] x[n,c,i+u,j+v]``; saves nothing."""
    n = x.shape[0]
    f, c, kh, kw = weight.shape
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = weight.reshape(f, -1) @ _im2col(x, kh, kw)                # (F, N*OH*OW)
    y += bias[:, None]
    return np.ascontiguousarray(y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)), None


def conv2d_backward(x, weight, grad_out):
    """grad_x (col2im of weight^T grad_out), grad_weight (grad_out cols^T), grad_bias.

    The columns are rebuilt from x, as fastconv's ``conv2d_backward`` does.
    """
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    oh, ow = h - kh + 1, w - kw + 1
    g = grad_out.transpose(1, 0, 2, 3).reshape(f, n * oh * ow)    # (F, N*OH*OW), a copy
    grad_bias = g.sum(axis=1)
    grad_weight = (g @ _im2col(x, kh, kw).T).reshape(weight.shape)
    dcols = (weight.reshape(f, -1).T @ g).reshape(c, kh, kw, n, oh, ow)
    # col2im as KH*KW shifted slice additions: each adds a whole (C, N, OH, OW) block, which is
    # far faster than np.add.at over every element.
    grad_x = np.zeros((c, n, h, w), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            grad_x[:, :, u:u + oh, v:v + ow] += dcols[:, u, v]
    return np.ascontiguousarray(grad_x.transpose(1, 0, 2, 3)), grad_weight, grad_bias


# --------------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------------

def linear_forward(x, weight, bias):
    """``y = x @ weight.T + bias``."""
    y = x @ weight.T
    y += bias
    return y, None


def linear_backward(x, weight, grad_out):
    """grad_x, grad_weight, grad_bias of :func:`linear_forward`."""
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0)


# --------------------------------------------------------------------------------------------
# Pooling over non-overlapping k x k windows that tile the input, by strided views
# --------------------------------------------------------------------------------------------
# One strided view per window offset (u, v) turns each pooling pass into k*k whole-array
# operations; it measured about twice as fast as a multi-axis reduction or argmax over a
# reshaped (..., k, ..., k) array, whose tiny inner axes NumPy loops over slowly.

def _offsets(x, k):
    """The k*k views ``x[:, :, u::k, v::k]`` in row-major (u, v) order."""
    h, w = x.shape[2:]
    assert h % k == 0 and w % k == 0, "baseline pools only tile exactly"
    return [x[:, :, u::k, v::k] for u in range(k) for v in range(k)]


def max_pool2d_forward(x, k):
    """k x k / k max pooling; saves the window offset of each maximum (uint8).

    Ties go to the first maximum in row-major window order, as fastconv's arg-max.
    """
    views = _offsets(x, k)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    arg = np.full(y.shape, len(views) - 1, dtype=np.uint8)
    for i in range(len(views) - 2, -1, -1):
        np.copyto(arg, np.uint8(i), where=views[i] == y)
    return y, arg


def max_pool2d_backward(grad_out, arg, x_shape, k):
    """Route each grad_out value to its window's arg-max; zero elsewhere."""
    grad_x = np.empty(x_shape, dtype=grad_out.dtype)
    for i, view in enumerate(_offsets(grad_x, k)):
        np.multiply(grad_out, arg == i, out=view)
    return grad_x


def lp_pool2d_forward(x, k):
    """L2 pooling (p = 2, Torch's sum, not mean): ``sqrt(sum x^2)`` over k x k / k windows."""
    views = _offsets(x, k)
    y = np.square(views[0])
    for v in views[1:]:
        y += np.square(v)
    np.sqrt(y, out=y)
    return y, y


def lp_pool2d_backward(x, y, grad_out, k):
    """``grad_x = x * grad_out / y`` per window, 0 where y = 0."""
    n, c, h, w = x.shape
    scale = np.divide(grad_out, y, out=np.zeros_like(y), where=y != 0)
    # Here one broadcast multiply over a (N, C, OH, k, OW, k) view beats k*k strided writes.
    windows = x.reshape(n, c, h // k, k, w // k, k)
    return (windows * scale[:, :, :, None, :, None]).reshape(x.shape)


# --------------------------------------------------------------------------------------------
# Elementwise activations: backward from the saved output, as fastconv's
# --------------------------------------------------------------------------------------------

def tanh_forward(x):
    y = np.tanh(x)
    return y, y


def tanh_backward(y, grad_out):
    grad_x = np.square(y)
    np.subtract(1, grad_x, out=grad_x)
    grad_x *= grad_out
    return grad_x


def sigmoid_forward(x):
    y = special.expit(x)
    return y, y


def sigmoid_backward(y, grad_out):
    grad_x = 1 - y
    grad_x *= y
    grad_x *= grad_out
    return grad_x


def relu_forward(x):
    y = np.maximum(x, 0)
    return y, y


def relu_backward(y, grad_out):
    return grad_out * (y > 0)


# --------------------------------------------------------------------------------------------
# Softmax family over the last axis, with max subtraction
# --------------------------------------------------------------------------------------------

def softmax_forward(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e, e


def softmax_backward(y, grad_out):
    return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x):
    z = x - x.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z, z


def log_softmax_backward(y, grad_out):
    return grad_out - np.exp(y) * grad_out.sum(axis=-1, keepdims=True)


def log_softmax_nll_forward(x, target):
    """Mean negative log-likelihood of the targets under log_softmax(x); saves logp."""
    logp, _ = log_softmax_forward(x)
    loss = -float(logp[np.arange(x.shape[0]), target].mean(dtype=np.float64))
    return loss, logp


def log_softmax_nll_backward(logp, target):
    """``(exp(logp) - onehot(target)) / N``."""
    grad_x = np.exp(logp)
    grad_x[np.arange(logp.shape[0]), target] -= 1
    grad_x /= logp.shape[0]
    return grad_x


# --------------------------------------------------------------------------------------------
# Rotation: vectorized bilinear gather (forward) and bincount scatter (backward)
# --------------------------------------------------------------------------------------------

def _rotation_taps(shape, angles):
    """Flat input indices (N, 4, H*W) and weights (N, 4, H*W) of the four bilinear taps.

    Inverse mapping about the grid centre, as fastconv's rotate: the output pixel (i, j) reads
    ``(ci + di cos t + dj sin t, cj - di sin t + dj cos t)``. A tap outside the image gets weight
    0 (and a clipped, harmless index), i.e. zero padding per tap.
    """
    _, _, h, w = shape
    ci, cj = 0.5 * (h - 1), 0.5 * (w - 1)
    di = (np.arange(h) - ci)[:, None]
    dj = (np.arange(w) - cj)[None, :]
    cos_t = np.cos(angles)[:, None, None]
    sin_t = np.sin(angles)[:, None, None]
    r = (ci + di * cos_t + dj * sin_t).reshape(len(angles), 1, h * w)
    s = (cj - di * sin_t + dj * cos_t).reshape(len(angles), 1, h * w)
    r0, s0 = np.floor(r), np.floor(s)
    fr, fs = r - r0, s - s0
    rows = r0 + np.array([0, 0, 1, 1])[:, None]                    # (N, 4, H*W)
    cols = s0 + np.array([0, 1, 0, 1])[:, None]
    weights = (np.where(rows == r0, 1 - fr, fr) * np.where(cols == s0, 1 - fs, fs))
    weights *= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = np.clip(rows, 0, h - 1).astype(np.intp) * w + np.clip(cols, 0, w - 1).astype(np.intp)
    return index, weights


def rotate_forward(x, angles):
    """Rotate each image counter-clockwise by its angle (radians), bilinear, zero outside."""
    n, c, h, w = x.shape
    index, weights = _rotation_taps(x.shape, angles)
    weights = weights.astype(x.dtype)
    planes = x.reshape(n, c, 1, h * w)
    taps = np.take_along_axis(planes, index[:, None], axis=-1)    # (N, C, 4, H*W)
    y = np.einsum("ncth,nth->nch", taps, weights).reshape(x.shape)
    return y, None


def rotate_backward(grad_out, angles):
    """Transpose of :func:`rotate_forward`: scatter-add each weighted tap back to its pixel."""
    n, c, h, w = grad_out.shape
    index, weights = _rotation_taps(grad_out.shape, angles)
    contrib = weights[:, None] * grad_out.reshape(n, c, 1, h * w)  # (N, C, 4, H*W)
    # One bincount over all planes (each plane offset by its own H*W block) is several times
    # faster than np.add.at for this scatter.
    plane = (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
    flat = np.bincount((index[:, None] + plane).ravel(), weights=contrib.ravel(),
                       minlength=n * c * h * w)
    return flat.astype(grad_out.dtype).reshape(grad_out.shape)


# --------------------------------------------------------------------------------------------
# Torch7 spatial subtractive normalization with a separable kernel, via scipy.ndimage
# --------------------------------------------------------------------------------------------

def _same_corr(a, kernel):
    """Zero-padded 'same' separable correlation of the last two axes (rows, then columns)."""
    a = ndimage.correlate1d(a, kernel, axis=-1, mode="constant", cval=0.0)
    return ndimage.correlate1d(a, kernel, axis=-2, mode="constant", cval=0.0)


def subtractive_normalization_forward(x, kernel):
    """``y[n,c] = x[n,c] - corr(sum_c x[n,c], kn) / (C corr(1, kn))`` with kn = k / sum k."""
    kn = (kernel / kernel.sum()).astype(x.dtype)
    c = x.shape[1]
    coef = _same_corr(np.ones(x.shape[2:], dtype=x.dtype), kn)
    mean = _same_corr(x.sum(axis=1), kn)
    mean /= c * coef
    return x - mean[:, None], None


def subtractive_normalization_backward(kernel, grad_out):
    """Transpose of the forward map: ``g - corr^T(sum_c g / (C coef), kn)``."""
    kn = (kernel / kernel.sum()).astype(grad_out.dtype)
    c = grad_out.shape[1]
    coef = _same_corr(np.ones(grad_out.shape[2:], dtype=grad_out.dtype), kn)
    s = grad_out.sum(axis=1)
    s /= c * coef
    # The transpose of a zero-padded 'same' correlation is the correlation with the flipped
    # kernel (odd sizes keep the centre aligned).
    return grad_out - _same_corr(s, kn[::-1].copy())[:, None]


# --------------------------------------------------------------------------------------------
# Inverted dropout
# --------------------------------------------------------------------------------------------

def dropout_forward(x, p, rng):
    """``mask = (u >= p) / (1 - p)`` from ``u = rng.random(x.shape)``; ``y = x * mask``."""
    mask = (rng.random(x.shape) >= p).astype(x.dtype)
    mask *= x.dtype.type(1 / (1 - p))
    return x * mask, mask


def dropout_backward(grad_out, mask):
    return grad_out * mask
