"""Slow, obviously correct float64 references for the convolution and linear kernels."""
import numpy as np
from scipy.signal import correlate


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d_reference(x, weight, bias=None, stride=1, padding=0):
    """Cross-correlation of each zero-padded sample with each filter, strided afterwards.

    ``y[n, f] = bias[f] + correlate(pad(x[n]), weight[f], 'valid')[0, ::sh, ::sw]``: the 3-D
    'valid' correlation over (C, H, W) sums over the channels.
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    x = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    weight = np.asarray(weight, dtype=np.float64)
    y = np.array([[correlate(xn, wf, mode="valid", method="direct")[0, ::sh, ::sw]
                   for wf in weight] for xn in x])
    y = y.reshape(x.shape[0], weight.shape[0], *y.shape[2:])
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y


def linear_reference(x, weight, bias=None):
    """``x @ weight.T + bias`` in float64."""
    y = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T
    return y if bias is None else y + np.asarray(bias, dtype=np.float64)


def conv2d_backward_reference(x, weight, grad_out, stride=1, padding=0):
    """``(grad_x, grad_weight, grad_bias)`` of :func:`conv2d_reference`, tap by tap.

    For each kernel tap (u, v) the forward pass multiplies a strided window of the padded
    input by ``weight[:, :, u, v]``; its gradients are two einsums over that window, and
    grad_x is the sum of the windows' contributions, cropped to the unpadded input.
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    gy = np.asarray(grad_out, dtype=np.float64)
    n, c, h, w = x.shape
    oh, ow = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(weight)
    for u in range(weight.shape[2]):
        for v in range(weight.shape[3]):
            rows = slice(u, u + sh * (oh - 1) + 1, sh)
            cols = slice(v, v + sw * (ow - 1) + 1, sw)
            gw[:, :, u, v] = np.einsum("nfij,ncij->fc", gy, xp[:, :, rows, cols])
            gxp[:, :, rows, cols] += np.einsum("nfij,fc->ncij", gy, weight[:, :, u, v])
    return gxp[:, :, ph:ph + h, pw:pw + w], gw, gy.sum(axis=(0, 2, 3))
