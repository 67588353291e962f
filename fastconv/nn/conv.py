"""Convolution layer."""
import numpy as np

from .. import functional as F
from .._kernels import _conv2d
from .._validation import as_pair, check_int
from . import _fastpath as fast
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
        self._plan = None    # (dtype, x shape, weight shape, y shape) of a validated call

    def _planned(self, x):
        """True when x and the parameters match the last validated call (see _fastpath)."""
        plan = self._plan
        if plan is None or not fast.enabled():
            return False
        dtype, x_shape, w_shape, y_shape = plan
        return (fast.ready(x, x_shape, dtype) and fast.ready(self.weight, w_shape, dtype)
                and (self.bias is None or fast.ready(self.bias, w_shape[:1], dtype)))

    def forward(self, x):
        self._x = x
        if self._planned(x):
            y = np.empty(self._plan[3], dtype=x.dtype)
            _conv2d.conv2d_forward(x, self.weight, self.bias, y, *self.stride, *self.padding,
                                   fast.threads())
            return y
        y = F.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding)
        self._plan = (x.dtype, x.shape, self.weight.shape, y.shape) if y.size else None
        return y

    def backward(self, grad_out, need_input_grad=True):
        x = self._x
        if (self._planned(x) and fast.ready(grad_out, self._plan[3], x.dtype)
                and fast.ready(self.grad_weight, self._plan[2], x.dtype)
                and (self.bias is None or fast.ready(self.grad_bias, self._plan[2][:1],
                                                     x.dtype))):
            grad_x = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
            grad_bias = (self.grad_bias if self.bias is not None
                         else np.zeros(self._plan[2][0], dtype=x.dtype))
            _conv2d.conv2d_backward(x, grad_out, self.weight if need_input_grad else None,
                                    grad_x, self.grad_weight, grad_bias, True, *self.stride,
                                    *self.padding, fast.threads())
            return grad_x
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
