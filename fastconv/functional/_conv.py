"""2-D convolution: validated wrappers around :mod:`fastconv._kernels._conv2d`.

The convolution is a cross-correlation, as in Torch and PyTorch::

    y[n, f, i, j] = bias[f] + sum_{c, u, v} weight[f, c, u, v] * x[n, c, i*sh + u - ph, j*sw + v - pw]

with x zero outside its bounds. Each function makes one call into nogil code; see the kernel
module for the threading model (results are reproducible for a given thread count).
"""
import os
import warnings

import numpy as np

from .._kernels import _conv2d, _winograd
from . import _autotune
from .._threads import effective_n_threads
from .._validation import (MAX_EXTENT, as_pair, check_array, check_int, check_out, check_shape,
                           output_size)

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
           "conv2d_backward", "input_grad_algorithm", "set_input_grad_algorithm",
           "INPUT_GRAD_ALGORITHMS", "conv_algorithm", "weight_grad_algorithm",
           "set_conv_algorithm", "CONV_ALGORITHMS"]


def _from_env(name, choices):
    """The setting in environment variable ``name``: "auto" when unset, and, with a warning
    that names the variable and the choices, when it is none of ``choices``."""
    value = os.environ.get(name, "auto").strip().lower() or "auto"
    if value not in choices:
        warnings.warn(f"{name}={value!r} is not one of {', '.join(choices)}; using auto",
                      RuntimeWarning, stacklevel=2)
        value = "auto"
    return value


#: How the input gradient of a convolution is computed. ``"col2im"``: the product of the
#: transposed filters with grad_out, scattered back into grad_x. ``"transposed"`` (stride 1,
#: "same" padding only): a forward convolution of grad_out with the filters flipped and
#: transposed, padding k - 1 - p: the same sums, no scatter, a GEMM whose inner dimension is
#: F*KH*KW instead of F. ``"auto"``: by the shapes alone (see :func:`input_grad_algorithm`).
INPUT_GRAD_ALGORITHMS = ("auto", "col2im", "transposed")
_input_grad = [_from_env("FASTCONV_CONV_INPUT_GRAD", INPUT_GRAD_ALGORITHMS)]
# The smallest output plane (OH * OW) from which the transposed form is chosen: measured on
# stride-1, same-padded 3x3 and 5x5 layers, 16-64 channels, batch 1/32/128, 2 threads
# (bench/RESULTS.md): 1.17-2.14x faster from 24x24 on, 0.83-1.29x at 16x16 and 20x20.
_TRANSPOSED_MIN_PLANE = 576


def set_input_grad_algorithm(name):
    """Force how convolutions compute their input gradient (``"auto"`` to let the shapes
    decide); returns the previous setting. Also ``FASTCONV_CONV_INPUT_GRAD``.

    Both algorithms give the same bits on any thread count; they differ from each other by
    rounding (the sums are taken in another order).
    """
    if name not in INPUT_GRAD_ALGORITHMS:
        raise ValueError(f"set_input_grad_algorithm: name must be one of "
                         f"{list(INPUT_GRAD_ALGORITHMS)}; got {name!r}")
    old, _input_grad[0] = _input_grad[0], name
    return old


#: How a convolution's forward pass and weight gradient (and the forward form of an input
#: gradient) are computed. ``"im2col"``: the filters times each sample's im2col matrix (one
#: GEMM per block). ``"winograd"`` (3x3 kernels, stride 1 only): Winograd's F(2x2, 3x3),
#: 2.25 times fewer multiply-adds, 16 GEMMs per block of tiles. ``"winograd4"``: F(4x4, 3x3)
#: for the forward pass (4 times fewer, 36 GEMMs, about 15 times F(2x2, 3x3)'s rounding
#: error), F(2x2, 3x3) for the weight gradient. ``"auto"``: by the shapes alone (see
#: :func:`conv_algorithm`). ``"benchmark"``: each shape's fastest, measured once on this
#: machine and cached on disk (:mod:`fastconv.functional._autotune`).
CONV_ALGORITHMS = ("auto", "im2col", "winograd", "winograd4", "benchmark")
_algorithm = [_from_env("FASTCONV_CONV_ALGORITHM", CONV_ALGORITHMS)]
# Where Winograd is chosen (bench/conv_winograd.py, bench/RESULTS.md, 2 threads): its 16
# GEMMs need channels, and its per-call filter transform and thin blocks need work to spread
# over. Forward: at least 32 input channels and 2,048 output pixels per call (the batch's),
# where it ran 1.04-1.97x as fast as im2col; below it lost (0.2-1.0x at batch 1, 8x8 planes
# below batch 32). Weight gradient: its per-unit partial sums (16*F*C each) must be small
# next to the unit's work: planes of at least 16x16 and batches of at least 32 (1.26-1.87x);
# on 8x8 planes it lost (0.2-0.5x).
_WINOGRAD_MIN_CHANNELS = 32
_WINOGRAD_MIN_PIXELS = 2048
_WINOGRAD_WEIGHT_MIN_PLANE = 256
_WINOGRAD_WEIGHT_MIN_BATCH = 32
# F(4x4, 3x3) in the forward pass where each unit's block holds at least 16 of its 4x4 tiles
# (1.43-1.56x F(2x2, 3x3) there; 0.95-1.10 with 8 or fewer tiles a block).
_WINOGRAD4_MIN_TILES = 16


def set_conv_algorithm(name):
    """Force how convolutions compute their forward pass and weight gradient (``"auto"`` to
    let the shapes decide); returns the previous setting. Also ``FASTCONV_CONV_ALGORITHM``.

    Every algorithm gives the same bits on any thread count; they differ from each other by
    rounding (Winograd's transforms add terms in another order; docs/guide/performance.rst
    states the error).
    """
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"set_conv_algorithm: name must be one of "
                         f"{list(CONV_ALGORITHMS)}; got {name!r}")
    old, _algorithm[0] = _algorithm[0], name
    return old


def _winograd_applies(weight_shape, stride):
    return tuple(stride) == (1, 1) and tuple(weight_shape[2:]) == (3, 3)


def _units_per_sample(n, tile_rows):
    """Parts each sample's forward pass is cut into (the kernels' rule: min(4, 64 / N), at
    most one per tile row)."""
    return max(1, min(4, -(-64 // max(n, 1)), tile_rows))


def conv_algorithm(weight_shape, stride, padding, y_shape):
    """``"im2col"``, ``"winograd"`` or ``"winograd4"``: how the forward pass of a convolution
    of these shapes is computed (also the forward form of an input gradient). A rule of the
    shapes alone, so that every thread count (and every run) computes the same bits: Winograd
    where it applies (3x3 kernel, stride 1) with at least 32 input channels and 2,048 output
    pixels in the batch; F(4x4, 3x3) among those where each unit of work holds at least 16
    of its tiles. :func:`set_conv_algorithm` forces one (Winograd only where it applies)
    or, with ``"benchmark"``, has each shape measured once and cached.
    """
    if not _winograd_applies(weight_shape, stride):
        return "im2col"
    if _algorithm[0] == "benchmark":
        return _measured_forward(tuple(weight_shape), tuple(padding), tuple(y_shape))
    if _algorithm[0] != "auto":
        return _algorithm[0]
    n, oh, ow = y_shape[0], y_shape[2], y_shape[3]
    if weight_shape[1] < _WINOGRAD_MIN_CHANNELS or n * oh * ow < _WINOGRAD_MIN_PIXELS:
        return "im2col"
    rows, cols = -(-oh // 4), -(-ow // 4)
    per_unit = rows // _units_per_sample(n, rows) * cols
    return "winograd4" if per_unit >= _WINOGRAD4_MIN_TILES else "winograd"


def weight_grad_algorithm(weight_shape, stride, padding, y_shape):
    """``"im2col"`` or ``"winograd"``: how the weight gradient of a convolution of these
    shapes is computed; as :func:`conv_algorithm`, with Winograd F(2x2, 3x3) from 32 input
    channels, output planes of 16x16 and batches of 32 on (or forced by
    :func:`set_conv_algorithm`; ``"winograd4"`` means F(2x2, 3x3) here).
    """
    if not _winograd_applies(weight_shape, stride):
        return "im2col"
    if _algorithm[0] == "benchmark":
        return _measured_weight_grad(tuple(weight_shape), tuple(padding), tuple(y_shape))
    if _algorithm[0] != "auto":
        return "winograd" if _algorithm[0] == "winograd4" else _algorithm[0]
    return ("winograd" if weight_shape[1] >= _WINOGRAD_MIN_CHANNELS
            and y_shape[2] * y_shape[3] >= _WINOGRAD_WEIGHT_MIN_PLANE
            and y_shape[0] >= _WINOGRAD_WEIGHT_MIN_BATCH else "im2col")


def _random_case(weight_shape, padding, y_shape):
    """float32 arrays for timing a stride-1 convolution: (x, weight, y, grad_y)."""
    rng = np.random.default_rng(0)
    kh, kw = weight_shape[2], weight_shape[3]
    x_shape = (y_shape[0], weight_shape[1], y_shape[2] + kh - 1 - 2 * padding[0],
               y_shape[3] + kw - 1 - 2 * padding[1])
    return (rng.standard_normal(x_shape, dtype=np.float32),
            rng.standard_normal(weight_shape, dtype=np.float32),
            np.empty(y_shape, np.float32), rng.standard_normal(y_shape, dtype=np.float32))


def _measured_forward(weight_shape, padding, y_shape):
    def make():
        x, weight, y, _ = _random_case(weight_shape, padding, y_shape)
        t, (ph, pw) = effective_n_threads(None), padding
        return {"im2col": lambda: _conv2d.conv2d_forward(x, weight, None, y, 1, 1, ph, pw, t,
                                                         None),
                "winograd": lambda: _winograd.winograd_forward(x, weight, None, y, ph, pw, t,
                                                               2),
                "winograd4": lambda: _winograd.winograd_forward(x, weight, None, y, ph, pw, t,
                                                                4)}
    return _autotune.choose("forward", weight_shape + padding + y_shape,
                            ("im2col", "winograd", "winograd4"), make)


def _measured_weight_grad(weight_shape, padding, y_shape):
    def make():
        x, weight, _, g = _random_case(weight_shape, padding, y_shape)
        gw, gb = np.empty_like(weight), np.empty(weight_shape[0], np.float32)
        t, (ph, pw) = effective_n_threads(None), padding
        return {"im2col": lambda: _conv2d.conv2d_backward(x, g, None, None, gw, gb, False, 1,
                                                          1, ph, pw, t, None),
                "winograd": lambda: _winograd.winograd_backward_weight(x, g, gw, gb, False,
                                                                       ph, pw, t)}
    return _autotune.choose("weight", weight_shape + padding + y_shape,
                            ("im2col", "winograd"), make)


def _measured_input_grad(weight_shape, padding, y_shape):
    def make():
        x, weight, _, g = _random_case(weight_shape, padding, y_shape)
        t = effective_n_threads(None)
        return {name: (lambda name=name: run_input_grad(name, g, weight, x, (1, 1), padding,
                                                        t))
                for name in ("col2im", "transposed")}
    return _autotune.choose("input", weight_shape + padding + y_shape,
                            ("col2im", "transposed"), make)


def run_forward(x, weight, bias, y, stride, padding, n_threads, col_keep=None):
    """y = conv(x) + bias of validated arrays by :func:`conv_algorithm`'s choice; returns
    whether the last sample's im2col matrix was left in col_keep (im2col only)."""
    (sh, sw), (ph, pw) = stride, padding
    algorithm = conv_algorithm(weight.shape, stride, padding, y.shape)
    if algorithm != "im2col":
        _winograd.winograd_forward(x, weight, bias, y, ph, pw, n_threads,
                                   4 if algorithm == "winograd4" else 2)
        return False
    return _conv2d.conv2d_forward(x, weight, bias, y, sh, sw, ph, pw, n_threads, col_keep)


def _transposable(weight_shape, stride, padding):
    kh, kw = weight_shape[2], weight_shape[3]
    return (tuple(stride) == (1, 1) and kh % 2 == 1 and kw % 2 == 1
            and tuple(padding) == ((kh - 1) // 2, (kw - 1) // 2))


def input_grad_algorithm(weight_shape, stride, padding, y_shape):
    """``"col2im"`` or ``"transposed"``: how the input gradient of a convolution of these
    shapes is computed. A rule of the shapes alone, so that every thread count (and every
    run) computes the same bits: the transposed form where it applies (stride 1, odd kernel,
    "same" padding) and the output plane has at least 576 pixels or the forward form takes
    Winograd (:func:`conv_algorithm` of the transposed filters), unless
    :func:`set_input_grad_algorithm` forces one (the transposed form only where it applies).
    """
    if not _transposable(weight_shape, stride, padding):
        return "col2im"
    if _input_grad[0] != "auto":
        return _input_grad[0]
    if _algorithm[0] == "benchmark":
        return _measured_input_grad(tuple(weight_shape), tuple(padding), tuple(y_shape))
    if y_shape[2] * y_shape[3] >= _TRANSPOSED_MIN_PLANE:
        return "transposed"
    # Where the forward form runs Winograd it won from 16x16 planes down to 8x8 at batch 32
    # (1.05-2.5x; bench/RESULTS.md).
    transposed_shape = (weight_shape[1], weight_shape[0]) + tuple(weight_shape[2:])
    return ("transposed" if conv_algorithm(transposed_shape, stride, padding, y_shape)
            != "im2col" else "col2im")


def transposed_filters(weight):
    """The filters of the input gradient's forward form: (C, F, KH, KW), flipped."""
    return np.ascontiguousarray(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def run_input_grad(algorithm, grad_out, weight, grad_x, stride, padding, n_threads):
    """grad_x of validated arrays by ``algorithm`` (see :func:`input_grad_algorithm`)."""
    (sh, sw), (ph, pw) = stride, padding
    if algorithm == "transposed":
        kh, kw = weight.shape[2], weight.shape[3]
        run_forward(grad_out, transposed_filters(weight), None, grad_x, (1, 1),
                    (kh - 1 - ph, kw - 1 - pw), n_threads)
    else:
        _conv2d.conv2d_backward_input(grad_out, weight, grad_x, sh, sw, ph, pw, n_threads)

_X = "(N, C, H, W)"
_W = "(F, C, KH, KW)"
_Y = "(N, F, OH, OW)"


def _shape4(fn, name, shape, layout):
    """A 4-tuple of ints >= 0 from a shape argument (a tuple, list or ``ndarray.shape``)."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{fn}: {name} must be a 4-tuple {layout}; got {shape!r}")
    return tuple(check_int(fn, name, s, 0) for s in shape)


def _conv2d_geometry(fn, x_shape, weight_shape, stride, padding, x_name="x",
                     weight_name="weight"):
    """Check the shapes and hyperparameters of one convolution (Torch's ``shapeCheck``).

    Returns ``(stride, padding, y_shape)`` with stride and padding as ``(h, w)`` pairs.
    """
    stride = as_pair(fn, "stride", stride, 1)
    padding = as_pair(fn, "padding", padding, 0)
    n, c, h, w = x_shape
    f, wc, kh, kw = weight_shape
    if min(c, h, w) < 1:
        raise ValueError(f"{fn}: {x_name} must have C, H, W >= 1 in {_X}; got {tuple(x_shape)}")
    if min(f, wc, kh, kw) < 1:
        raise ValueError(f"{fn}: {weight_name} must have every size >= 1 in {_W}; "
                         f"got {tuple(weight_shape)}")
    if wc != c:
        raise ValueError(f"{fn}: {weight_name} has {wc} input channels but {x_name} has {c}; "
                         f"{weight_name} must have shape ({f}, {c}, {kh}, {kw}) {_W}")
    oh = output_size(fn, "height", h, kh, stride[0], padding[0])
    ow = output_size(fn, "width", w, kw, stride[1], padding[1])
    # The im2col matrix is (K, P) = (C*KH*KW, OH*OW), multiplied by a BLAS counting in int.
    if c * kh * kw > MAX_EXTENT or oh * ow > MAX_EXTENT or f > MAX_EXTENT:
        raise ValueError(f"{fn}: geometry too large: C*KH*KW = {c * kh * kw}, "
                         f"OH*OW = {oh * ow} and F = {f} must each be <= {MAX_EXTENT}")
    return stride, padding, (n, f, oh, ow)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, *, out=None, n_threads=None):
    """2-D convolution (cross-correlation) of a batch.

    ``y[n,f,i,j] = bias[f] + sum_{c,u,v} weight[f,c,u,v] * x[n,c,i*sh+u-ph, j*sw+v-pw]``,
    x taken as zero in the padding.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Input batch.
    weight : ndarray, same dtype as x
        Filters.
    bias : ndarray or None, same dtype as x
        One value per filter; None for no bias.
    stride : int or (int, int)
        ``(sh, sw)``, each >= 1.
    padding : int or (int, int)
        Zero padding ``(ph, pw)`` on both sides, each >= 0.
    out : ndarray, optional
        C-contiguous buffer of the output's exact shape and dtype, not overlapping an input.
    n_threads : int or None
        Thread count; see :func:`fastconv.set_num_threads`.

    Returns
    -------
    y : ndarray
        ``out`` when given.

    Shape:
        x (N, C, H, W), weight (F, C, KH, KW), bias (F,) -> y (N, F, OH, OW) with
        ``OH = (H + 2*ph - KH) // sh + 1`` and ``OW = (W + 2*pw - KW) // sw + 1``;
        the kernel must fit the padded input.
    """
    fn = "conv2d_forward"
    x = check_array(fn, "x", x, 4, _X)
    weight = check_array(fn, "weight", weight, 4, _W, x.dtype, "x")
    if bias is not None:
        bias = check_array(fn, "bias", bias, 1, "(F,)", x.dtype, "x")
    (sh, sw), (ph, pw), y_shape = _conv2d_geometry(fn, x.shape, weight.shape, stride, padding)
    if bias is not None:
        check_shape(fn, "bias", bias, (weight.shape[0],), "(F,)")
    out = check_out(fn, out, y_shape, x.dtype, (x, weight, bias))
    run_forward(x, weight, bias, out, (sh, sw), (ph, pw), effective_n_threads(n_threads))
    return out


def conv2d_backward_input(grad_out, weight, input_shape, stride=1, padding=0, *, out=None,
                          n_threads=None):
    """Gradient of a convolution with respect to its input.

    ``grad_x[n,c,h,w] = sum of weight[f,c,u,v] * grad_out[n,f,i,j]`` over all ``(f,u,v,i,j)``
    with ``i*sh + u - ph = h`` and ``j*sw + v - pw = w``: the adjoint of
    :func:`conv2d_forward` without bias.

    Parameters
    ----------
    grad_out : ndarray, float32 or float64
        Gradient of the loss with respect to the convolution's output.
    weight : ndarray, same dtype
        The filters of the forward pass.
    input_shape : tuple of 4 ints
        Shape of the forward input x. It is needed because with a stride > 1 several input
        sizes give the same output size.
    stride, padding, n_threads :
        As in :func:`conv2d_forward`.
    out : ndarray, optional
        Buffer for grad_x, as in :func:`conv2d_forward`.

    Returns
    -------
    grad_x : ndarray

    Shape:
        grad_out (N, F, OH, OW), weight (F, C, KH, KW) -> grad_x = input_shape (N, C, H, W),
        where (N, F, OH, OW) must be the forward output shape of input_shape.
    """
    fn = "conv2d_backward_input"
    grad_out = check_array(fn, "grad_out", grad_out, 4, _Y)
    weight = check_array(fn, "weight", weight, 4, _W, grad_out.dtype, "grad_out")
    input_shape = _shape4(fn, "input_shape", input_shape, _X)
    (sh, sw), (ph, pw), y_shape = _conv2d_geometry(fn, input_shape, weight.shape, stride,
                                                   padding, x_name="input_shape")
    check_shape(fn, "grad_out", grad_out, y_shape, "(the forward output shape)")
    out = check_out(fn, out, input_shape, grad_out.dtype, (grad_out, weight))
    run_input_grad(input_grad_algorithm(weight.shape, (sh, sw), (ph, pw), y_shape), grad_out,
                   weight, out, (sh, sw), (ph, pw), effective_n_threads(n_threads))
    return out


def _gradient_buffers(fn, accumulate_into, weight_shape, dtype, inputs):
    """Parameter-gradient buffers for a backward kernel, from ``accumulate_into``.

    Returns ``(grad_weight, grad_bias, bias_result, accumulate)``: new arrays when
    accumulate_into is None, else the validated pair ``(grad_weight, grad_bias or None)``.
    The kernel always sums grad_bias somewhere; bias_result is what the caller returns.
    """
    if accumulate_into is None:
        gb = np.empty(weight_shape[0], dtype=dtype)
        return np.empty(weight_shape, dtype=dtype), gb, gb, False
    if not isinstance(accumulate_into, (tuple, list)) or len(accumulate_into) != 2:
        raise ValueError(f"{fn}: accumulate_into must be a pair (grad_weight, grad_bias); "
                         f"got {accumulate_into!r}")
    gw, gb = accumulate_into
    gw = check_out(fn, gw, weight_shape, dtype, inputs, name="accumulate_into[0]")
    if gb is None:
        # No bias to accumulate into: the kernel still needs somewhere to sum grad_out.
        return gw, np.zeros(weight_shape[0], dtype=dtype), None, True
    gb = check_out(fn, gb, (weight_shape[0],), dtype, inputs + (gw,), name="accumulate_into[1]")
    return gw, gb, gb, True


def _backward(fn, x, grad_out, weight, weight_shape, stride, padding, out, accumulate_into,
              n_threads):
    """Shared body of conv2d_backward_weight (weight None) and conv2d_backward."""
    x = check_array(fn, "x", x, 4, _X)
    grad_out = check_array(fn, "grad_out", grad_out, 4, _Y, x.dtype, "x")
    if weight is not None:
        weight = check_array(fn, "weight", weight, 4, _W, x.dtype, "x")
        weight_shape, weight_name = weight.shape, "weight"
    else:
        weight_shape, weight_name = _shape4(fn, "kernel_shape", weight_shape, _W), "kernel_shape"
    (sh, sw), (ph, pw), y_shape = _conv2d_geometry(fn, x.shape, weight_shape, stride, padding,
                                                   weight_name=weight_name)
    check_shape(fn, "grad_out", grad_out, y_shape, "(the forward output shape)")
    inputs = (x, grad_out, weight)
    grad_x = None
    if weight is not None:
        grad_x = check_out(fn, out, x.shape, x.dtype, inputs)
    gw, gb, bias_result, accumulate = _gradient_buffers(fn, accumulate_into, weight_shape,
                                                         x.dtype, inputs + (grad_x,))
    backward(x, grad_out, weight, grad_x, gw, gb, accumulate, (sh, sw), (ph, pw),
             effective_n_threads(n_threads))
    return grad_x, gw, bias_result


def backward(x, grad_out, weight, grad_x, gw, gb, accumulate, stride, padding, n_threads,
             col=None):
    """Weight and bias gradients, and grad_x unless it is None, of validated arrays: one
    kernel call, or two where the weight gradient takes Winograd's form or the input
    gradient the transposed form."""
    (sh, sw), (ph, pw) = stride, padding
    input_grad = None if grad_x is None else input_grad_algorithm(weight.shape, stride,
                                                                  padding, grad_out.shape)
    if weight_grad_algorithm(gw.shape, stride, padding, grad_out.shape) == "winograd":
        _winograd.winograd_backward_weight(x, grad_out, gw, gb, accumulate, ph, pw, n_threads)
    elif input_grad == "transposed" or grad_x is None:
        _conv2d.conv2d_backward(x, grad_out, None, None, gw, gb, accumulate, sh, sw, ph, pw,
                                n_threads, col)
    else:
        _conv2d.conv2d_backward(x, grad_out, weight, grad_x, gw, gb, accumulate, sh, sw, ph,
                                pw, n_threads, col)
        return
    if grad_x is not None:
        run_input_grad(input_grad, grad_out, weight, grad_x, stride, padding, n_threads)


def conv2d_backward_weight(x, grad_out, kernel_shape, stride=1, padding=0, *,
                           accumulate_into=None, n_threads=None):
    """Gradients of a convolution with respect to its weight and bias.

    ``grad_weight[f,c,u,v] = sum_{n,i,j} grad_out[n,f,i,j] * x[n,c,i*sh+u-ph, j*sw+v-pw]``
    and ``grad_bias[f] = sum_{n,i,j} grad_out[n,f,i,j]``: sums over the batch, as the
    gradient of a summed loss.

    Parameters
    ----------
    x : ndarray, float32 or float64
        The forward input.
    grad_out : ndarray, same dtype
        Gradient of the loss with respect to the forward output.
    kernel_shape : tuple of 4 ints
        The weight's shape (F, C, KH, KW).
    stride, padding, n_threads :
        As in :func:`conv2d_forward`.
    accumulate_into : (ndarray, ndarray or None), optional
        ``(grad_weight, grad_bias)`` buffers (C-contiguous, exact shape and dtype) to add the
        gradients to, in place and without a temporary, as a module accumulates its parameter
        gradients. They are returned. grad_bias may be None (a convolution without bias).

    Returns
    -------
    grad_weight : ndarray, shape kernel_shape
    grad_bias : ndarray (F,), or None when ``accumulate_into[1]`` is None

    Shape:
        x (N, C, H, W), grad_out (N, F, OH, OW) with OH, OW as in :func:`conv2d_forward`
        -> grad_weight (F, C, KH, KW), grad_bias (F,).

    Threads of a batch sum their samples into separate buffers that are then added in thread
    order: results are bitwise reproducible for a given thread count.
    """
    _, gw, gb = _backward("conv2d_backward_weight", x, grad_out, None, kernel_shape, stride,
                          padding, None, accumulate_into, n_threads)
    return gw, gb


def conv2d_backward(x, weight, grad_out, stride=1, padding=0, *, out=None,
                    accumulate_into=None, n_threads=None):
    """All three gradients of a convolution in one pass over the batch.

    Equivalent to :func:`conv2d_backward_input` and :func:`conv2d_backward_weight` but builds
    each sample's im2col matrix once for both.

    Parameters
    ----------
    x, weight : ndarray
        The forward input and filters (float32 or float64, one dtype).
    grad_out : ndarray
        Gradient of the loss with respect to the forward output.
    stride, padding, n_threads :
        As in :func:`conv2d_forward`.
    out : ndarray, optional
        Buffer for grad_x.
    accumulate_into : (ndarray, ndarray or None), optional
        As in :func:`conv2d_backward_weight`.

    Returns
    -------
    grad_x, grad_weight, grad_bias : ndarray
        grad_bias is None when ``accumulate_into[1]`` is None.

    Shape:
        x (N, C, H, W), weight (F, C, KH, KW), grad_out (N, F, OH, OW)
        -> grad_x (N, C, H, W), grad_weight (F, C, KH, KW), grad_bias (F,).
    """
    return _backward("conv2d_backward", x, grad_out, weight, None, stride, padding, out,
                     accumulate_into, n_threads)
