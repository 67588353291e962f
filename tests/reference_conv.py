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
