"""Pooling layers."""
import numpy as np

from .. import functional as F
from .._kernels import _pool
from .._validation import as_pair, check_float
from . import _fastpath as fast
from .module import Module, register_module

__all__ = ["MaxPool2d", "LPPool2d", "AvgPool2d"]

_INTP = np.dtype(np.intp)


@register_module
class MaxPool2d(Module):
    """Max pooling; backward sends each gradient to its window's arg-max.

    Max pooling commutes with any non-decreasing elementwise map f: ``pool(f(x)) =
    f(pool(x))``. :class:`~fastconv.nn.Sequential` uses this (``commutes_with_monotonic``)
    to run a monotonic activation before it on the pooled values only.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H - kh) // sh + 1 (floor mode, no padding).
    """

    hyper_names = ("kernel_size", "stride")
    input_ndim = 4
    commutes_with_monotonic = True

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = as_pair("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair("MaxPool2d", "stride", stride, 1))
        self._indices = None
        self._shape = None
        self._plan_forward = self._plan_backward = None

    def forward(self, x):
        plan = self._plan_forward
        n_threads = fast.threads()
        self._indices = None    # so that the previous indices can be recycled
        if plan is not None and plan.admits(self, n_threads, (x,)):
            self._shape = x.shape
            y = self._empty(plan.out_shape, x.dtype)
            self._indices = self._empty(plan.out_shape, _INTP)
            _pool.max_pool2d_forward(x, y, self._indices, *plan.args, n_threads)
            return y
        self._shape = None
        y, self._indices = F.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                return_indices=True)
        self._shape = x.shape
        self._plan_forward = fast.plan_if_nonempty(
            self, (x,), out_shape=y.shape,
            args=as_pair("MaxPool2d", "kernel_size", self.kernel_size, 1)
            + as_pair("MaxPool2d", "stride", self.stride, 1))
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        shape, indices = self._saved(self._shape), self._indices
        plan = self._plan_backward
        n_threads = fast.threads()
        if plan is not None and plan.admits(self, n_threads, (grad_out, indices), state=shape):
            grad_x = self._empty(shape, grad_out.dtype)
            # The kernel skips and counts indices outside the plane; none come from forward.
            if not _pool.max_pool2d_backward(grad_out, indices, grad_x, n_threads):
                return grad_x
        grad_x = F.max_pool2d_backward(grad_out, indices, shape)
        self._plan_backward = fast.plan_if_nonempty(self, (grad_out, indices),
                                                    out_shape=shape, state=shape)
        return grad_x

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}


@register_module
class LPPool2d(Module):
    """Power-average pooling as Torch7's SpatialLPPooling: y = (sum_window x^p)^(1/p).

    ``p = 2`` is the L2 pooling of the homework's default ConvNet.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H - kh) // sh + 1.
    """

    hyper_names = ("p", "kernel_size", "stride")
    input_ndim = 4

    def __init__(self, p, kernel_size, stride=None):
        super().__init__()
        self.p = check_float("LPPool2d", "p", p, minimum=1.0)
        self.kernel_size = as_pair("LPPool2d", "kernel_size", kernel_size, 1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair("LPPool2d", "stride", stride, 1))
        self._x = self._y = None
        self._plan_forward = self._plan_backward = None

    def _args(self):
        return ((check_float("LPPool2d", "p", self.p, minimum=1.0),)
                + as_pair("LPPool2d", "kernel_size", self.kernel_size, 1)
                + as_pair("LPPool2d", "stride", self.stride, 1))

    def forward(self, x):
        plan = self._plan_forward
        n_threads = fast.threads()
        self._x = self._y = None    # so that the previous output can be recycled
        if plan is not None and plan.admits(self, n_threads, (x,)):
            y = self._empty(plan.out_shape, x.dtype)
            _pool.lp_pool2d_forward(x, y, *plan.args, n_threads)
        else:
            y = F.lp_pool2d_forward(x, self.p, self.kernel_size, self.stride)
            self._plan_forward = fast.plan_if_nonempty(self, (x,), out_shape=y.shape,
                                                       args=self._args())
        self._x, self._y = x, y
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        x, y = self._saved(self._x), self._y
        plan = self._plan_backward
        n_threads = fast.threads()
        if plan is not None and plan.admits(self, n_threads, (x, y, grad_out)):
            grad_x = self._empty(plan.out_shape, x.dtype)
            _pool.lp_pool2d_backward(x, y, grad_out, grad_x, *plan.args, n_threads)
            return grad_x
        grad_x = F.lp_pool2d_backward(x, y, grad_out, self.p, self.kernel_size, self.stride)
        self._plan_backward = fast.plan_if_nonempty(self, (x, y, grad_out),
                                                    out_shape=x.shape, args=self._args())
        return grad_x

    def get_config(self):
        return {"p": self.p, "kernel_size": list(self.kernel_size), "stride": list(self.stride)}


@register_module
class AvgPool2d(Module):
    """Average pooling (PyTorch's AvgPool2d without padding): the mean of each window.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H - kh) // sh + 1 (floor mode).
    """

    hyper_names = ("kernel_size", "stride")
    input_ndim = 4

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = as_pair("AvgPool2d", "kernel_size", kernel_size, 1)
        self.stride = (self.kernel_size if stride is None
                       else as_pair("AvgPool2d", "stride", stride, 1))
        self._shape = None
        self._plan_forward = self._plan_backward = None

    def _args(self):
        return (as_pair("AvgPool2d", "kernel_size", self.kernel_size, 1)
                + as_pair("AvgPool2d", "stride", self.stride, 1))

    def forward(self, x):
        plan = self._plan_forward
        n_threads = fast.threads()
        if plan is not None and plan.admits(self, n_threads, (x,)):
            self._shape = x.shape
            y = self._empty(plan.out_shape, x.dtype)
            _pool.avg_pool2d_forward(x, y, *plan.args, n_threads)
            return y
        self._shape = None
        y = F.avg_pool2d_forward(x, self.kernel_size, self.stride)
        self._shape = x.shape
        self._plan_forward = fast.plan_if_nonempty(self, (x,), out_shape=y.shape,
                                                   args=self._args())
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        shape = self._saved(self._shape)
        plan = self._plan_backward
        n_threads = fast.threads()
        # The input shape is state the kernel depends on: several give one output shape.
        if plan is not None and plan.admits(self, n_threads, (grad_out,), state=shape):
            grad_x = self._empty(shape, grad_out.dtype)
            _pool.avg_pool2d_backward(grad_out, grad_x, *plan.args, n_threads)
            return grad_x
        grad_x = F.avg_pool2d_backward(grad_out, shape, self.kernel_size, self.stride)
        self._plan_backward = fast.plan_if_nonempty(self, (grad_out,), out_shape=shape,
                                                    state=shape, args=self._args())
        return grad_x

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}
