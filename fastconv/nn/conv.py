"""Convolution layer."""
import numpy as np

from .. import functional as F
from .._validation import as_pair, check_int
from ._init import as_generator, check_dtype, torch7_uniform
from .module import Module, register_module

__all__ = ["Conv2d"]


@register_module
class Conv2d(Module):
    """2-D convolution (cross-correlation) over an NCHW batch.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding : int or (int, int)
    bias : bool
    dtype : {numpy.float32, numpy.float64}
    rng : None, int or numpy.random.Generator
        Source of the initial weights, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as Torch7,
        fan_in = in_channels * kh * kw.

    Shape:
        x (N, C_in, H, W) -> y (N, C_out, OH, OW), OH = (H + 2 ph - kh) // sh + 1.
    """

    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, dtype=np.float64, rng=None):
        super().__init__()
        self.in_channels = check_int("Conv2d", "in_channels", in_channels, 1)
        self.out_channels = check_int("Conv2d", "out_channels", out_channels, 1)
        self.kernel_size = as_pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = as_pair("Conv2d", "stride", stride, 1)
        self.padding = as_pair("Conv2d", "padding", padding, 0)
        dtype = check_dtype(dtype)
        rng = as_generator(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = torch7_uniform(rng, (self.out_channels, self.in_channels, kh, kw),
                                     fan_in, dtype)
        self.grad_weight = np.zeros_like(self.weight)
        if bias:
            self.bias = torch7_uniform(rng, (self.out_channels,), fan_in, dtype)
            self.grad_bias = np.zeros_like(self.bias)
        else:
            self.bias = self.grad_bias = None
        self._x = None

    def forward(self, x):
        self._x = x
        return F.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding)

    def backward(self, grad_out, need_input_grad=True):
        grads = (self.grad_weight, self.grad_bias)
        if not need_input_grad:
            F.conv2d_backward_weight(self._x, grad_out, self.weight.shape, self.stride,
                                     self.padding, accumulate_into=grads)
            return None
        grad_x, _, _ = F.conv2d_backward(self._x, self.weight, grad_out, self.stride,
                                         self.padding, accumulate_into=grads)
        return grad_x

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "bias": self.bias is not None,
                "dtype": str(self.weight.dtype)}
