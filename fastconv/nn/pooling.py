"""Pooling layers."""
from .. import functional as F
from .._validation import as_pair, check_float
from .module import Module, register_module

__all__ = ["MaxPool2d", "LPPool2d"]


@register_module
class MaxPool2d(Module):
    """Max pooling; backward sends each gradient to its window's arg-max.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H - kh) // sh + 1 (floor mode, no padding).
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = as_pair("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair("MaxPool2d", "stride", stride, 1))
        self._indices = None
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        y, self._indices = F.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                return_indices=True)
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        return F.max_pool2d_backward(grad_out, self._indices, self._shape)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}


@register_module
class LPPool2d(Module):
    """Power-average pooling as Torch7's SpatialLPPooling: y = (sum_window x^p)^(1/p).

    ``p = 2`` is the L2 pooling of the homework's default ConvNet.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H - kh) // sh + 1.
    """

    def __init__(self, p, kernel_size, stride=None):
        super().__init__()
        self.p = check_float("LPPool2d", "p", p, minimum=1.0)
        self.kernel_size = as_pair("LPPool2d", "kernel_size", kernel_size, 1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair("LPPool2d", "stride", stride, 1))
        self._x = self._y = None

    def forward(self, x):
        self._x = x
        self._y = F.lp_pool2d_forward(x, self.p, self.kernel_size, self.stride)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        return F.lp_pool2d_backward(self._x, self._y, grad_out, self.p, self.kernel_size,
                                    self.stride)

    def get_config(self):
        return {"p": self.p, "kernel_size": list(self.kernel_size), "stride": list(self.stride)}
