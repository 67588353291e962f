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

    # The plan's args hold (kernel shape, dtype, bytes) and the prepared kernel arguments.
    # The kernel is compared by its bytes: identical bytes mean identical arguments, and the
    # comparison costs 0.07 us where np.array_equal costs 1.8 (four calls per step of the
    # homework's ConvNet). A kernel changed in place, even to -0.0 for 0.0, goes back
    # through validation.
    def __init__(self, kernel_size=7, kernel=None, dtype=np.float64):
        super().__init__(kernel_size, kernel, dtype)
        self._plan_forward = self._plan_backward = None

    def _admits(self, plan, a, kernel, n_threads):
        if plan is None or not plan.admits(self, n_threads, (a,)):
            return False
        shape, dtype, data = plan.args[0]
        return kernel.shape == shape and kernel.dtype == dtype and kernel.tobytes() == data

    def _plan(self, a, kernel):
        if not a.size:
            return None
        _, _, kn, kt, kh, kw, separable, _, _ = _prepare(type(self).__name__, a, kernel)
        return fast.Plan(self, fast.threads(), (a,), out_shape=a.shape,
                         args=((kernel.shape, kernel.dtype, kernel.tobytes()),
                               (kn, kt, kh, kw, separable)))

    def forward(self, x):
        self._x = x
        kernel = self._kernel_for(x)
        n_threads = fast.threads()
        if self._admits(self._plan_forward, x, kernel, n_threads):
            y = self._empty(x.shape, x.dtype)
            _kernel.subtractive_forward(x, *self._plan_forward.args[1], y, n_threads)
            return y
        y = F.spatial_subtractive_normalization_forward(x, kernel)
        self._plan_forward = self._plan(x, kernel)
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        kernel = self._kernel_for(self._saved(self._x))
        n_threads = fast.threads()
        if self._admits(self._plan_backward, grad_out, kernel, n_threads):
            grad_x = self._empty(grad_out.shape, grad_out.dtype)
            # The map is linear: its gradient needs only grad_out and the kernel.
            _kernel.subtractive_backward(grad_out, *self._plan_backward.args[1], grad_x,
                                         n_threads)
            return grad_x
        grad_x = F.spatial_subtractive_normalization_backward(self._x, kernel, grad_out)
        self._plan_backward = self._plan(grad_out, kernel)
        return grad_x


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
        x = self._saved(self._x)
        return F.spatial_contrastive_normalization_backward(
            x, self._kernel_for(x), grad_out, self.threshold)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
