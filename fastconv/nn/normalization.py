"""Torch7's local normalizations with a Gaussian neighbourhood."""
import numpy as np

from .. import functional as F
from .._validation import check_float, check_int
from .module import Module, register_module

__all__ = ["SubtractiveNormalization", "ContrastiveNormalization"]


class _LocalNormalization(Module):
    def __init__(self, kernel_size=7, kernel=None, dtype=np.float64):
        super().__init__()
        if kernel is None:
            kernel = F.gaussian_kernel_1d(check_int(type(self).__name__, "kernel_size",
                                                    kernel_size, 1))
        self.kernel = np.ascontiguousarray(kernel, dtype=dtype)
        self._x = None

    def _astype_buffers(self, dtype):
        self.kernel = self.kernel.astype(dtype)

    def _kernel_for(self, x):
        if self.kernel.dtype != x.dtype:
            self.kernel = self.kernel.astype(x.dtype)
        return self.kernel

    def get_config(self):
        return {"kernel": self.kernel.tolist()}

    def extra_repr(self):
        return f"kernel={self.kernel.shape}"


@register_module
class SubtractiveNormalization(_LocalNormalization):
    """y = x - (Gaussian-weighted local mean across all channels), border-corrected,
    as Torch7's SpatialSubtractiveNormalization."""

    def forward(self, x):
        self._x = x
        return F.spatial_subtractive_normalization_forward(x, self._kernel_for(x))

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        return F.spatial_subtractive_normalization_backward(self._x, self._kernel_for(self._x),
                                                            grad_out)


@register_module
class ContrastiveNormalization(_LocalNormalization):
    """Subtractive, then divisive normalization (Torch7's SpatialContrastiveNormalization)."""

    def __init__(self, kernel_size=7, kernel=None, threshold=1e-4, dtype=np.float64):
        super().__init__(kernel_size, kernel, dtype)
        self.threshold = check_float("ContrastiveNormalization", "threshold", threshold,
                                     minimum=0.0)

    def forward(self, x):
        self._x = x
        return F.spatial_contrastive_normalization_forward(x, self._kernel_for(x),
                                                           self.threshold)

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        return F.spatial_contrastive_normalization_backward(
            self._x, self._kernel_for(self._x), grad_out, self.threshold)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
