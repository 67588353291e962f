"""Torch7's local normalizations with a Gaussian neighbourhood."""
import numpy as np

from .. import functional as F
from .._kernels import _normalization as _kernel
from .._validation import check_float, check_int
from ..functional._normalization import _prepare
from . import _fastpath as fast
from .module import Module, register_module

__all__ = ["SubtractiveNormalization", "ContrastiveNormalization"]


class _LocalNormalization(Module):
    def __init__(self, kernel_size=7, kernel=None, dtype=np.float32):
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
        return {"kernel": self.kernel.tolist(), "dtype": str(self.kernel.dtype)}

    def extra_repr(self):
        return f"kernel={self.kernel.shape}"


@register_module
class SubtractiveNormalization(_LocalNormalization):
    """y = x - (Gaussian-weighted local mean across all channels), border-corrected,
    as Torch7's SpatialSubtractiveNormalization."""

    # (dtype, x shape, (kernel shape, dtype, bytes), prepared kernel arguments). The kernel
    # is compared by its bytes: identical bytes mean identical arguments, and the comparison
    # costs 0.07 us where np.array_equal costs 1.8 (four calls per step of the homework's
    # ConvNet). A kernel changed in place, even to -0.0 for 0.0, goes back through validation.
    _plan = None

    def _planned(self, a, kernel):
        plan = self._plan
        if plan is None or not fast.enabled() or not fast.ready(a, plan[1], plan[0]):
            return False
        shape, dtype, data = plan[2]
        return kernel.shape == shape and kernel.dtype == dtype and kernel.tobytes() == data

    def forward(self, x):
        self._x = x
        kernel = self._kernel_for(x)
        if self._planned(x, kernel):
            y = self._empty(x.shape, x.dtype)
            _kernel.subtractive_forward(x, *self._plan[3], y, fast.threads())
            return y
        y = F.spatial_subtractive_normalization_forward(x, kernel)
        self._plan = None
        if y.size:
            fn = "SubtractiveNormalization"
            _, _, kn, kt, kh, kw, separable, _, _ = _prepare(fn, x, kernel)
            self._plan = (x.dtype, x.shape, (kernel.shape, kernel.dtype, kernel.tobytes()),
                          (kn, kt, kh, kw, separable))
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        kernel = self._kernel_for(self._x)
        if self._planned(grad_out, kernel):
            grad_x = self._empty(grad_out.shape, grad_out.dtype)
            # The map is linear: its gradient needs only grad_out and the kernel.
            _kernel.subtractive_backward(grad_out, *self._plan[3], grad_x, fast.threads())
            return grad_x
        return F.spatial_subtractive_normalization_backward(self._x, kernel, grad_out)


@register_module
class ContrastiveNormalization(_LocalNormalization):
    """Subtractive, then divisive normalization (Torch7's SpatialContrastiveNormalization)."""

    def __init__(self, kernel_size=7, kernel=None, threshold=1e-4, dtype=np.float32):
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
