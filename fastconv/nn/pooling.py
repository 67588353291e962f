"""Pooling layers."""
import numpy as np

from .. import functional as F
from .._kernels import _pool
from .._validation import as_pair, check_float
from . import _fastpath as fast
from .module import Module, register_module

__all__ = ["MaxPool2d", "LPPool2d"]

_INTP = np.dtype(np.intp)


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
        self._plan = None    # (dtype, x shape, y shape) of the last validated forward
        self._act_y = None   # the fused activation's pooled output (forward_fused)

    def _pool_planned(self, x):
        """Max-pool x straight through the kernel (indices kept for backward) when it
        matches the validated plan; else None."""
        plan = self._plan
        if plan is None or not fast.enabled() or not fast.ready(x, plan[1], plan[0]):
            return None
        self._shape = x.shape
        y = self._empty(plan[2], x.dtype)
        self._indices = None    # so that the previous indices can be recycled
        self._indices = self._empty(plan[2], _INTP)
        _pool.max_pool2d_forward(x, y, self._indices, *self.kernel_size, *self.stride,
                                 fast.threads())
        return y

    def _unpool_planned(self, grad_out):
        """Scatter grad_out to the arg-max positions straight through the kernel when it
        matches the plan; else None."""
        plan = self._plan
        if plan is not None and fast.enabled() and self._shape == plan[1] \
                and fast.ready(grad_out, plan[2], plan[0]) \
                and fast.ready(self._indices, plan[2], _INTP):
            grad_x = self._empty(plan[1], grad_out.dtype)
            # The kernel skips and counts indices outside the plane; none come from forward.
            if not _pool.max_pool2d_backward(grad_out, self._indices, grad_x, fast.threads()):
                return grad_x
        return None

    def forward(self, x):
        self._act_y = None
        y = self._pool_planned(x)
        if y is not None:
            return y
        self._shape = x.shape
        y, self._indices = F.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                return_indices=True)
        self._plan = (x.dtype, x.shape, y.shape) if y.size else None
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        grad_x = self._unpool_planned(grad_out)
        if grad_x is not None:
            return grad_x
        return F.max_pool2d_backward(grad_out, self._indices, self._shape)

    def forward_fused(self, act, x):
        """``self.forward(act.forward(x))`` for a non-decreasing elementwise activation
        (tanh, sigmoid, ReLU), computed as ``act(max_pool(x))``.

        The two are equal because the activation preserves order, and the fused form
        applies the activation to a quarter of the elements (2x2 pooling) and never stores
        its full-size output; backward likewise applies the activation's derivative to the
        pooled gradient only and scatters it once. One difference remains: when the
        activation rounds two different inputs of one window to the same value, the
        unfused pair sends the gradient to the first of them and the fused pair to the
        larger input; the gradient's value is the same.

        Returns None (run the pair unfused) unless the layer has a validated plan that x
        matches.
        """
        if not getattr(act, "monotonic", False):
            return None
        self._act_y = None    # so that the previous pooled output can be recycled
        y = self._pool_planned(x)
        if y is None:
            return None
        flat = y.reshape(-1)
        type(act)._kernel_forward(flat, flat, fast.threads())  # elementwise: in place is safe
        act._y, act._fused = None, True
        self._act_y = y
        return y

    def fused_with(self, act):
        return self._act_y is not None and getattr(act, "_fused", False)

    def backward_fused(self, act, grad_out, need_input_grad=True):
        """``act.backward(self.backward(grad_out))`` after :meth:`forward_fused`."""
        if not need_input_grad:
            return None
        plan, y = self._plan, self._act_y
        if y is None:
            raise RuntimeError("MaxPool2d.backward_fused: the last forward was not fused")
        if fast.enabled() and fast.ready(grad_out, plan[2], plan[0]):
            grad_y = self._empty(plan[2], y.dtype)
            type(act)._kernel_backward(y.reshape(-1), grad_out.reshape(-1), grad_y.reshape(-1),
                                       fast.threads())
        else:
            grad_y = type(act)._backward(y, grad_out)
        grad_x = self._unpool_planned(grad_y)
        if grad_x is not None:
            return grad_x
        return F.max_pool2d_backward(grad_y, self._indices, self._shape)

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
        self._plan = None    # (dtype, x shape, y shape) of the last validated forward

    def forward(self, x):
        self._x = x
        plan = self._plan
        if plan is not None and fast.enabled() and fast.ready(x, plan[1], plan[0]):
            self._y = None    # so that the previous output can be recycled
            self._y = self._empty(plan[2], x.dtype)
            _pool.lp_pool2d_forward(x, self._y, self.p, *self.kernel_size, *self.stride,
                                    fast.threads())
            return self._y
        self._y = F.lp_pool2d_forward(x, self.p, self.kernel_size, self.stride)
        self._plan = (x.dtype, x.shape, self._y.shape) if self._y.size else None
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        plan, x, y = self._plan, self._x, self._y
        if plan is not None and fast.enabled() and fast.ready(x, plan[1], plan[0]) \
                and fast.ready(y, plan[2], plan[0]) and fast.ready(grad_out, plan[2], plan[0]):
            grad_x = self._empty(plan[1], x.dtype)
            _pool.lp_pool2d_backward(x, y, grad_out, grad_x, self.p, *self.kernel_size,
                                     *self.stride, fast.threads())
            return grad_x
        return F.lp_pool2d_backward(x, y, grad_out, self.p, self.kernel_size, self.stride)

    def get_config(self):
        return {"p": self.p, "kernel_size": list(self.kernel_size), "stride": list(self.stride)}
