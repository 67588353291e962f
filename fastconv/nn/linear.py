"""Fully connected layer and the flattening that precedes it."""
import math

import numpy as np

from .. import functional as F
from .._kernels import _linear
from .._validation import check_int
from ._weighted import WeightedLayer
from .module import Module, register_module

__all__ = ["Linear", "Flatten"]


@register_module
class Linear(WeightedLayer):
    """y = x @ weight.T + bias, weight shaped (out_features, in_features) as in Torch.

    Shape:
        x (N, in_features) -> y (N, out_features).
    """

    input_ndim, size_argument = 2, "in_features"

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, 1)
        self.out_features = check_int("Linear", "out_features", out_features, 1)
        self._init_parameters((self.out_features, self.in_features), self.in_features, bias,
                              dtype, rng)

    @classmethod
    def array_shapes(cls, settings):
        out = check_int("Linear", "out_features", settings.get("out_features"), 1)
        weight = (out, check_int("Linear", "in_features", settings.get("in_features"), 1))
        return [weight] + ([(out,)] if settings.get("bias", True) else []), [], 0

    def _input_features(self):
        return 2, self.in_features, "features"

    def _validated_forward(self, x):
        return F.linear_forward(x, self.weight, self.bias), None

    def _run_forward(self, x, y, args, n_threads):
        _linear.linear_forward(x, self.weight, self.bias, y, n_threads)

    def _validated_backward(self, x, grad_out, need_input_grad):
        grad_x, _, _ = F.linear_backward(x, self.weight, grad_out,
                                         accumulate_into=(self.grad_weight, self.grad_bias),
                                         need_input_grad=need_input_grad)
        return grad_x, None

    def _run_backward(self, x, grad_out, grad_x, grad_bias, args, n_threads):
        _linear.linear_backward(x, self.weight, grad_out, grad_x, self.grad_weight, grad_bias,
                                True, n_threads)

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
        # The feature count is given: "-1" cannot be inferred from an empty batch.
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out, need_input_grad=True):
        shape = self._saved(self._shape)
        return grad_out.reshape(shape) if need_input_grad else None
