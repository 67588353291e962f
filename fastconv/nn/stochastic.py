"""Layers that draw random numbers in training mode: dropout and random rotation.

Both draw from ``self.rng``, a numpy Generator that :meth:`Module.set_rng` shares across the
model, so one generator state in a checkpoint reproduces every draw. In evaluation mode both
are the identity.
"""
import numpy as np

from .. import functional as F
from .._validation import check_float
from .module import Module, register_module

__all__ = ["Dropout", "RandomRotation"]


def _need_rng(module):
    if module.rng is None:
        module.rng = np.random.default_rng()
    return module.rng


@register_module
class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p and scale the
    survivors by 1/(1-p), so evaluation needs no rescaling."""

    stochastic = True

    def __init__(self, p=0.5):
        super().__init__()
        self.p = check_float("Dropout", "p", p, minimum=0.0, maximum=1.0, max_inclusive=False)
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        y, self._mask = F.dropout_forward(x, self.p, _need_rng(self))
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        if self._mask is None:
            return grad_out
        return F.dropout_backward(grad_out, self._mask)

    def get_config(self):
        return {"p": self.p}


@register_module
class RandomRotation(Module):
    """Rotate each training image by an angle drawn from N(0, sigma^2) radians.

    The homework's best model (99.57%) used sigma = 0.2. Bilinear interpolation about the
    image centre, zeros outside; the identity in evaluation mode.
    """

    stochastic = True
    input_ndim = 4

    def __init__(self, sigma=0.2):
        super().__init__()
        self.sigma = check_float("RandomRotation", "sigma", sigma, minimum=0.0)
        self._angles = None

    def forward(self, x):
        if not self.training or self.sigma == 0.0:
            self._angles = None
            return x
        self._angles = _need_rng(self).normal(0.0, self.sigma, size=x.shape[0])
        return F.rotate_forward(x, self._angles)

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        if self._angles is None:
            return grad_out
        return F.rotate_backward(grad_out, self._angles)

    def get_config(self):
        return {"sigma": self.sigma}
