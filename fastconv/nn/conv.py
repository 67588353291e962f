"""Convolution layer."""
import numpy as np

from .. import functional as F
from ..functional import _conv as conv_impl
from .._validation import as_pair, check_int
from . import _fastpath as fast
from ._weighted import WeightedLayer
from .module import register_module

__all__ = ["Conv2d"]


@register_module
class Conv2d(WeightedLayer):
    """2-D convolution (cross-correlation) over an NCHW batch.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding : int or (int, int)
    bias : bool
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
    rng : None, int or numpy.random.Generator
        Source of the initial weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as Torch7,
        fan_in = in_channels * kh * kw.

    Shape:
        x (N, C_in, H, W) -> y (N, C_out, OH, OW), OH = (H + 2 ph - kh) // sh + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = check_int("Conv2d", "in_channels", in_channels, 1)
        self.out_channels = check_int("Conv2d", "out_channels", out_channels, 1)
        self.kernel_size = as_pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = as_pair("Conv2d", "stride", stride, 1)
        self.padding = as_pair("Conv2d", "padding", padding, 0)
        kh, kw = self.kernel_size
        self._init_parameters((self.out_channels, self.in_channels, kh, kw),
                              self.in_channels * kh * kw, bias, dtype, rng)
        # The last sample's im2col matrix, when the forward pass left it for the backward
        # pass (see _run_forward); _col_ready says it belongs to the current input.
        self._col = self._col_x = None
        self._col_ready = False
        self._col_key = None    # (x shape, kernel arguments) it was built for

    hyper_names = ("stride", "padding")
    input_ndim, size_argument = 4, "in_channels"

    @classmethod
    def array_shapes(cls, settings):
        out = check_int("Conv2d", "out_channels", settings.get("out_channels"), 1)
        kh, kw = as_pair("Conv2d", "kernel_size", settings.get("kernel_size"), 1)
        weight = (out, check_int("Conv2d", "in_channels", settings.get("in_channels"), 1),
                  kh, kw)
        return [weight] + ([(out,)] if settings.get("bias", True) else []), [], 0

    def _input_features(self):
        return 4, self.in_channels, "input channels"

    def _validated_forward(self, x):
        self._col, self._col_ready = None, False
        y = F.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding)
        return y, as_pair("Conv2d", "stride", self.stride, 1) + \
            as_pair("Conv2d", "padding", self.padding, 0)

    def _run_forward(self, x, y, args, n_threads):
        # At batch 1 in training mode the sample's im2col matrix is built whole and kept
        # (the kernel does so where K > P), so that the weight gradient need not build it
        # again: +2.5-4% per training step of the max-pool ConvNet at batch 1
        # (bench/RESULTS.md). Larger batches are built block by block and not kept (that
        # would take K*P elements per sample, for one sample in N). The kept matrix is only
        # as good as the input it was built from, so a copy of that sample is kept too, and
        # backward uses the matrix only while x still holds those bytes.
        self._col = self._col_x = None  # recycled through the pool once nothing holds them
        self._col_ready = False
        if self.training and x.shape[0] == 1 and conv_impl.conv_algorithm(
                self.weight.shape, args[:2], args[2:], y.shape) == "im2col":
            f, c, kh, kw = self.weight.shape
            self._col = self._empty((c * kh * kw * y.shape[2] * y.shape[3],), x.dtype)
        self._col_ready = conv_impl.run_forward(x, self.weight, self.bias, y, args[:2],
                                                args[2:], n_threads, self._col)
        if self._col_ready:
            self._col_x = self._empty(x.shape[1:], x.dtype)
            np.copyto(self._col_x, x[-1])
            self._col_key = (x.shape, args)
        else:
            self._col = None

    def _validated_backward(self, x, grad_out, need_input_grad):
        self._col, self._col_ready = None, False
        grads = (self.grad_weight, self.grad_bias)
        if not need_input_grad:
            F.conv2d_backward_weight(x, grad_out, self.weight.shape, self.stride,
                                     self.padding, accumulate_into=grads)
            grad_x = None
        else:
            grad_x, _, _ = F.conv2d_backward(x, self.weight, grad_out, self.stride,
                                             self.padding, accumulate_into=grads)
        return grad_x, as_pair("Conv2d", "stride", self.stride, 1) + \
            as_pair("Conv2d", "padding", self.padding, 0)

    def _run_backward(self, x, grad_out, grad_x, grad_bias, args, n_threads):
        col = None
        if self._col_ready and self._col_key == (x.shape, args) \
                and fast.tail_equal(x, self._col_x):
            col = self._col
        conv_impl.backward(x, grad_out, self.weight, grad_x, self.grad_weight, grad_bias, True,
                           args[:2], args[2:], n_threads, col)

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "bias": self.bias is not None,
                "dtype": str(self.weight.dtype)}
