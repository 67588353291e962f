"""Activation layers. Each saves its output: the backward passes are written in terms of y."""
from .. import functional as F
from .._kernels import _activation as _k
from .._validation import check_float
from . import _fastpath as fast
from .module import Module, register_module

__all__ = ["Tanh", "Sigmoid", "ReLU", "Softmax", "LogSoftmax"]


class _OutputSaving(Module):
    """A layer whose backward needs only its output y.

    Most also name their kernels (``_kernel_forward(x, y, n_threads)``,
    ``_kernel_backward(y, grad_out, grad_x, n_threads)``) for the fast path; those see flat
    views, or (rows, last axis) views when ``_rows`` is set (softmax-like layers).
    """
    _forward = _backward = None
    _kernel_forward = _kernel_backward = None
    # Non-decreasing elementwise maps commute with max pooling: see MaxPool2d.forward_fused.
    monotonic = False
    _rows = False

    @classmethod
    def _view(cls, a):
        return a.reshape(-1, a.shape[-1]) if cls._rows else a.reshape(-1)

    def __init__(self):
        super().__init__()
        self._y = None
        self._plan = None    # (dtype, shape) of the last validated forward
        self._fused = False  # the last forward ran inside MaxPool2d.forward_fused

    def forward(self, x):
        self._fused = False
        kernel, plan = type(self)._kernel_forward, self._plan
        if kernel is not None and plan is not None and fast.enabled() \
                and fast.ready(x, plan[1], plan[0]):
            self._y = None    # so that the previous output can be recycled
            y = self._empty(x.shape, x.dtype)
            kernel(self._view(x), self._view(y), fast.threads())
        else:
            y = type(self)._forward(x)
            self._plan = (y.dtype, y.shape) if y.size else None
        self._y = y
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        if self._y is None and self._fused:
            raise RuntimeError(f"{type(self).__name__}.backward: its last forward ran fused with "
                               f"the max pooling after it (inside Sequential), which keeps no "
                               f"full output; call the Sequential's backward")
        y, kernel, plan = self._y, type(self)._kernel_backward, self._plan
        if kernel is not None and plan is not None and fast.enabled() \
                and fast.ready(y, plan[1], plan[0]) and fast.ready(grad_out, plan[1], plan[0]):
            grad_x = self._empty(y.shape, y.dtype)
            kernel(self._view(y), self._view(grad_out), self._view(grad_x), fast.threads())
            return grad_x
        return type(self)._backward(y, grad_out)


@register_module
class Tanh(_OutputSaving):
    """y = tanh(x); dL/dx = dL/dy (1 - y^2)."""
    monotonic = True
    _forward = F.tanh_forward
    _backward = F.tanh_backward
    _kernel_forward = _k.tanh_forward
    _kernel_backward = _k.tanh_backward


@register_module
class Sigmoid(_OutputSaving):
    """y = 1 / (1 + exp(-x)); dL/dx = dL/dy y (1 - y)."""
    monotonic = True
    _forward = F.sigmoid_forward
    _backward = F.sigmoid_backward
    _kernel_forward = _k.sigmoid_forward
    _kernel_backward = _k.sigmoid_backward


@register_module
class ReLU(_OutputSaving):
    """y = max(x, 0); dL/dx = dL/dy [y > 0]."""
    monotonic = True
    _forward = F.relu_forward
    _backward = F.relu_backward
    _kernel_forward = _k.relu_forward
    _kernel_backward = _k.relu_backward


@register_module
class LogSoftmax(_OutputSaving):
    """y = x - logsumexp(x) over the last axis."""
    _forward = F.log_softmax_forward
    _backward = F.log_softmax_backward
    _kernel_forward = _k.log_softmax_forward
    _kernel_backward = _k.log_softmax_backward
    _rows = True


@register_module
class Softmax(Module):
    """y_i = exp(beta x_i) / sum_k exp(beta x_k) over the last axis.

    The homework's convention exp(-b x) is ``Softmax(beta=-b)``.
    """

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = check_float("Softmax", "beta", beta)
        self._y = None

    def forward(self, x):
        self._y = F.softmax_forward(x, self.beta)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        return F.softmax_backward(self._y, grad_out, self.beta) if need_input_grad else None

    def get_config(self):
        return {"beta": self.beta}
