"""Activation layers. Each saves its output: the backward passes are written in terms of y."""
from .. import functional as F
from .._validation import check_float
from .module import Module, register_module

__all__ = ["Tanh", "Sigmoid", "ReLU", "Softmax", "LogSoftmax"]


class _OutputSaving(Module):
    _forward = _backward = None

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        self._y = type(self)._forward(x)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        return type(self)._backward(self._y, grad_out) if need_input_grad else None


@register_module
class Tanh(_OutputSaving):
    """y = tanh(x); dL/dx = dL/dy (1 - y^2)."""
    _forward = F.tanh_forward
    _backward = F.tanh_backward


@register_module
class Sigmoid(_OutputSaving):
    """y = 1 / (1 + exp(-x)); dL/dx = dL/dy y (1 - y)."""
    _forward = F.sigmoid_forward
    _backward = F.sigmoid_backward


@register_module
class ReLU(_OutputSaving):
    """y = max(x, 0); dL/dx = dL/dy [y > 0]."""
    _forward = F.relu_forward
    _backward = F.relu_backward


@register_module
class LogSoftmax(_OutputSaving):
    """y = x - logsumexp(x) over the last axis."""
    _forward = F.log_softmax_forward
    _backward = F.log_softmax_backward


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
