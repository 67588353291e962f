"""Fully connected layer and the flattening that precedes it."""
import numpy as np

from .. import functional as F
from .._validation import check_int
from ._init import as_generator, check_dtype, torch7_uniform
from .module import Module, register_module

__all__ = ["Linear", "Flatten"]


@register_module
class Linear(Module):
    """y = x @ weight.T + bias, weight shaped (out_features, in_features) as in Torch.

    Shape:
        x (N, in_features) -> y (N, out_features).
    """

    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, dtype=np.float64, rng=None):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, 1)
        self.out_features = check_int("Linear", "out_features", out_features, 1)
        dtype = check_dtype(dtype)
        rng = as_generator(rng)
        self.weight = torch7_uniform(rng, (self.out_features, self.in_features),
                                     self.in_features, dtype)
        self.grad_weight = np.zeros_like(self.weight)
        if bias:
            self.bias = torch7_uniform(rng, (self.out_features,), self.in_features, dtype)
            self.grad_bias = np.zeros_like(self.bias)
        else:
            self.bias = self.grad_bias = None
        self._x = None

    def forward(self, x):
        self._x = x
        return F.linear_forward(x, self.weight, self.bias)

    def backward(self, grad_out, need_input_grad=True):
        gx, _, _ = F.linear_backward(self._x, self.weight, grad_out,
                                     accumulate_into=(self.grad_weight, self.grad_bias),
                                     need_input_grad=need_input_grad)
        return gx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "dtype": str(self.weight.dtype)}


@register_module
class Flatten(Module):
    """Flatten every axis but the batch: (N, C, H, W) -> (N, C*H*W). A view, no copy."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out.reshape(self._shape) if need_input_grad else None
