"""Torch7's local normalizations with a Gaussian neighbourhood, and batch normalization."""
import numpy as np

from .. import functional as F
from .._kernels import _batchnorm as _bn
from .._kernels import _normalization as _kernel
from .._validation import FLOAT_DTYPES, check_float, check_int
from ..functional._batchnorm import update_running_stats
from ..functional._normalization import _prepare
from ._init import check_dtype
from . import _fastpath as fast
from .module import Module, register_module

__all__ = ["SubtractiveNormalization", "ContrastiveNormalization", "BatchNorm2d"]


class _LocalNormalization(Module):
    input_ndim = 4

    def __init__(self, kernel_size=7, kernel=None, dtype=np.float32):
        super().__init__()
        if kernel is None:
            kernel = F.gaussian_kernel_1d(check_int(type(self).__name__, "kernel_size",
                                                    kernel_size, 1))
        self.kernel = np.ascontiguousarray(kernel, dtype=dtype)
        self._x = None

    @classmethod
    def array_shapes(cls, settings):
        kernel = settings.get("kernel")
        if kernel is None:
            return [], [], check_int(cls.__name__, "kernel_size", settings.get("kernel_size", 7), 1)
        # A list read from JSON: its size is bounded by the file's.
        return [], [], int(np.size(kernel)) if isinstance(kernel, list) else 1

    def _astype_buffers(self, dtype):
        self.kernel = self.kernel.astype(dtype)

    def _kernel_for(self, x):
        """The kernel in x's dtype (converted once when x's float dtype changes)."""
        dtype = getattr(x, "dtype", None)
        if dtype in FLOAT_DTYPES and isinstance(self.kernel, np.ndarray) \
                and self.kernel.dtype != dtype:
            self.kernel = self.kernel.astype(dtype)
        return self.kernel

    def get_config(self):
        return {"kernel": self.kernel.tolist(), "dtype": str(self.kernel.dtype)}

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
    def __init__(self, kernel_size=7, kernel=None, dtype=np.float32):
        super().__init__(kernel_size, kernel, dtype)
        self._plan_forward = self._plan_backward = None

    def _admits(self, plan, arrays, kernel, n_threads):
        if plan is None or not plan.admits(self, n_threads, arrays):
            return False
        shape, dtype, data = plan.args[0]
        return kernel.shape == shape and kernel.dtype == dtype and kernel.tobytes() == data

    def _plan(self, arrays, kernel):
        a = arrays[0]
        if not a.size:
            return None
        _, _, kn, kt, kh, kw, separable, _, _ = _prepare(type(self).__name__, a, kernel)
        return fast.Plan(self, fast.threads(), arrays, out_shape=a.shape,
                         args=((kernel.shape, kernel.dtype, kernel.tobytes()),
                               (kn, kt, kh, kw, separable)))

    def forward(self, x):
        self._x = None
        kernel = self._kernel_for(x)
        n_threads = fast.threads()
        if self._admits(self._plan_forward, (x,), kernel, n_threads):
            y = self._empty(x.shape, x.dtype)
            _kernel.subtractive_forward(x, *self._plan_forward.args[1], y, n_threads)
        else:
            y = F.spatial_subtractive_normalization_forward(x, kernel)
            self._plan_forward = self._plan((x,), kernel)
        self._x = x
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        kernel = self._kernel_for(self._saved(self._x))
        n_threads = fast.threads()
        # x is not read (the map is linear) but validation checks its shape against
        # grad_out's, so the plan covers it too.
        if self._admits(self._plan_backward, (grad_out, self._x), kernel, n_threads):
            grad_x = self._empty(grad_out.shape, grad_out.dtype)
            # The map is linear: its gradient needs only grad_out and the kernel.
            _kernel.subtractive_backward(grad_out, *self._plan_backward.args[1], grad_x,
                                         n_threads)
            return grad_x
        grad_x = F.spatial_subtractive_normalization_backward(self._x, kernel, grad_out)
        self._plan_backward = self._plan((grad_out, self._x), kernel)
        return grad_x


@register_module
class ContrastiveNormalization(_LocalNormalization):
    """Subtractive, then divisive normalization (Torch7's SpatialContrastiveNormalization)."""

    def __init__(self, kernel_size=7, kernel=None, threshold=1e-4, dtype=np.float32):
        super().__init__(kernel_size, kernel, dtype)
        self.threshold = check_float("ContrastiveNormalization", "threshold", threshold,
                                     minimum=0.0)

    def forward(self, x):
        self._x = None
        y = F.spatial_contrastive_normalization_forward(x, self._kernel_for(x), self.threshold)
        self._x = x
        return y

    def backward(self, grad_out, need_input_grad=True):
        if not need_input_grad:
            return None
        x = self._saved(self._x)
        return F.spatial_contrastive_normalization_backward(
            x, self._kernel_for(x), grad_out, self.threshold)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@register_module
class BatchNorm2d(Module):
    """Batch normalization per channel, as PyTorch's BatchNorm2d (affine, running stats).

    In training, each channel of the batch is normalized by its mean and biased variance,
    and the running statistics move towards the batch's: ``running = (1 - momentum) *
    running + momentum * batch``, with the unbiased variance. In evaluation the running
    statistics normalize. ``running_mean`` and ``running_var`` are buffers: model files and
    checkpoints save and restore them.

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float
        Added to the variance inside the square root.
    momentum : float
        Weight of the batch statistics in the running ones.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32

    Shape:
        (N, C, H, W) -> (N, C, H, W); training needs N*H*W >= 2.
    """

    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var")
    hyper_names = ("training", "eps", "momentum")
    input_ndim, size_argument = 4, "num_features"
    batch_dependent = True

    @classmethod
    def array_shapes(cls, settings):
        c = (check_int("BatchNorm2d", "num_features", settings.get("num_features"), 1),)
        return [c, c], [c, c], 0

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        dtype = check_dtype(dtype)
        self.num_features = check_int("BatchNorm2d", "num_features", num_features, 1)
        self.eps = check_float("BatchNorm2d", "eps", eps, minimum=0.0, min_inclusive=False)
        self.momentum = check_float("BatchNorm2d", "momentum", momentum, minimum=0.0,
                                    maximum=1.0)
        self.weight = np.ones(self.num_features, dtype)
        self.bias = np.zeros(self.num_features, dtype)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)
        self._saved_forward = None    # (x, mean, var, training) for backward
        self._plan_forward = self._plan_backward = None

    def forward(self, x):
        # Only training runs fast: evaluation re-checks the running variance every call.
        plan = self._plan_forward
        n_threads = fast.threads()
        stats = (self.running_mean, self.running_var)
        if self.training and plan is not None \
                and plan.admits(self, n_threads, (x,), (self.weight, self.bias), stats):
            y = self._empty(x.shape, x.dtype)
            mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
            _bn.batch_norm2d_forward(x, self.weight, self.bias, mean, var, y, True,
                                     self.eps, n_threads)
            update_running_stats(*stats, mean, var, plan.args, self.momentum)
        else:
            self._saved_forward = None
            y, mean, var = F.batch_norm2d_forward(x, self.weight, self.bias, *stats,
                                                  self.training, self.momentum, self.eps)
            self._plan_forward = None
            if self.training:
                self._plan_forward = fast.plan_if_nonempty(
                    self, (x,), (self.weight, self.bias), stats, out_shape=x.shape,
                    args=x.shape[0] * x.shape[2] * x.shape[3])
        self._saved_forward = (x, mean, var, bool(self.training))
        return y

    def backward(self, grad_out, need_input_grad=True):
        x, mean, var, training = self._saved(self._saved_forward)
        plan = self._plan_backward
        n_threads = fast.threads()
        writes = (self.grad_weight, self.grad_bias)
        if training and self.training and plan is not None \
                and plan.admits(self, n_threads, (x, grad_out, mean, var), (self.weight,),
                                writes):
            grad_x = self._empty(x.shape, x.dtype) if need_input_grad else None
            _bn.batch_norm2d_backward(x, grad_out, self.weight, mean, var, grad_x,
                                      self.grad_weight, self.grad_bias, True, True, self.eps,
                                      n_threads)
            return grad_x
        grad_x, _, _ = F.batch_norm2d_backward(x, self.weight, grad_out, mean, var, training,
                                               self.eps, accumulate_into=writes,
                                               need_input_grad=need_input_grad)
        self._plan_backward = None
        if training and self.training:
            self._plan_backward = fast.plan_if_nonempty(
                self, (x, grad_out, mean, var), (self.weight,), writes, out_shape=x.shape)
        return grad_x

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": str(self.weight.dtype)}
