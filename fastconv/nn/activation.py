"""Activation layers. Each saves its output: the backward passes are written in terms of y."""
from .. import functional as F
from .._kernels import _activation as _k
from .._validation import check_array, check_float
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
    # Non-decreasing elementwise maps commute with max pooling; Sequential then applies them
    # to the pooled values (see forward_inplace and backward_from_output).
    monotonic = False
    _rows = False

    @classmethod
    def _view(cls, a):
        return a.reshape(-1, a.shape[-1]) if cls._rows else a.reshape(-1)

    def __init__(self):
        super().__init__()
        self._y = None
        # True when the last forward was forward_inplace: no output kept, and a container
        # that ran it must supply the output itself (backward_from_output).
        self.inplace_last = False
        self._plan_forward = self._plan_backward = None

    def forward(self, x):
        self.inplace_last = False
        kernel, plan = type(self)._kernel_forward, self._plan_forward
        n_threads = fast.threads()
        self._y = None    # so that the previous output can be recycled
        if kernel is not None and plan is not None and plan.admits(self, n_threads, (x,)):
            y = self._empty(x.shape, x.dtype)
            kernel(self._view(x), self._view(y), n_threads)
        else:
            y = type(self)._forward(x)
            self._plan_forward = fast.plan_if_nonempty(self, (x,), out_shape=y.shape)
        self._y = y
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        if self._y is None and self.inplace_last:
            raise RuntimeError(f"{type(self).__name__}.backward: its last forward ran fused "
                               f"with the max pooling after it (forward_inplace, inside "
                               f"Sequential), which keeps no output; call the Sequential's "
                               f"backward")
        return self.backward_from_output(self._saved(self._y), grad_out)

    def backward_from_output(self, y, grad_out):
        """dL/dx given this layer's output ``y`` and ``grad_out`` = dL/dy; no state is
        read or kept. Validated unless both are C-contiguous arrays of one float dtype
        and shape."""
        kernel, plan = type(self)._kernel_backward, self._plan_backward
        n_threads = fast.threads()
        if kernel is not None and plan is not None \
                and plan.admits(self, n_threads, (y, grad_out)):
            grad_x = self._empty(y.shape, y.dtype)
            kernel(self._view(y), self._view(grad_out), self._view(grad_x), n_threads)
            return grad_x
        grad_x = type(self)._backward(y, grad_out)
        self._plan_backward = fast.plan_if_nonempty(self, (y, grad_out), out_shape=y.shape)
        return grad_x


class _Elementwise(_OutputSaving):
    """An elementwise activation whose kernels may run in place."""

    def forward_inplace(self, a):
        """Replace the values of ``a`` by their image and return ``a``; keeps no output.

        For containers that own ``a`` (Sequential applies a monotonic activation to the
        output of the max pooling after it). ``a`` must be a C-contiguous, writeable
        float32/float64 ndarray; elementwise kernels read each element before writing it,
        so in place is safe.
        """
        if not fast.writable_float(a):
            fn = f"{type(self).__name__}.forward_inplace"
            check_array(fn, "a", a)     # the type and dtype errors of every entry point
            raise ValueError(f"{fn}: a must be C-contiguous, writeable and in native byte "
                             f"order")
        self._y = None
        self.inplace_last = True
        if a.size:
            flat = a.reshape(-1)
            type(self)._kernel_forward(flat, flat, fast.threads())
        return a


@register_module
class Tanh(_Elementwise):
    """y = tanh(x); dL/dx = dL/dy (1 - y^2)."""
    monotonic = True
    _forward = F.tanh_forward
    _backward = F.tanh_backward
    _kernel_forward = _k.tanh_forward
    _kernel_backward = _k.tanh_backward


@register_module
class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)); dL/dx = dL/dy y (1 - y)."""
    monotonic = True
    _forward = F.sigmoid_forward
    _backward = F.sigmoid_backward
    _kernel_forward = _k.sigmoid_forward
    _kernel_backward = _k.sigmoid_backward


@register_module
class ReLU(_Elementwise):
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
        if not need_input_grad:
            return None
        return F.softmax_backward(self._saved(self._y), grad_out, self.beta)

    def get_config(self):
        return {"beta": self.beta}
