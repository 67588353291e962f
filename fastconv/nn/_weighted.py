"""What Conv2d and Linear share: Torch7-initialized weight and bias, and the fast path."""
import numpy as np

from . import _fastpath as fast
from ._init import as_generator, check_dtype, torch7_uniform
from .module import Module


class WeightedLayer(Module):
    """A layer with ``weight`` (out, ...) and an optional ``bias`` (out,).

    Subclasses supply the validated calls (``_validated_forward``, ``_validated_backward``,
    through :mod:`fastconv.functional`) and the direct kernel calls (``_run_forward``,
    ``_run_backward``) that the fast path uses while every array matches the last validated
    call (see :mod:`fastconv.nn._fastpath`).
    """

    param_names = ("weight", "bias")

    def _init_parameters(self, weight_shape, fan_in, bias, dtype, rng):
        """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, as Torch7's reset."""
        dtype = check_dtype(dtype)
        rng = as_generator(rng)
        self.weight = torch7_uniform(rng, weight_shape, fan_in, dtype)
        self.grad_weight = np.zeros_like(self.weight)
        if bias:
            self.bias = torch7_uniform(rng, weight_shape[:1], fan_in, dtype)
            self.grad_bias = np.zeros_like(self.bias)
        else:
            self.bias = self.grad_bias = None
        self._x = None
        self._plan = None    # (dtype, x shape, weight shape, y shape) of a validated call

    def _planned(self, x):
        """True when x and the parameters match the last validated call."""
        plan = self._plan
        if plan is None or not fast.enabled():
            return False
        dtype, x_shape, w_shape, _ = plan
        return (fast.ready(x, x_shape, dtype) and fast.ready(self.weight, w_shape, dtype)
                and (self.bias is None or fast.ready(self.bias, w_shape[:1], dtype)))

    def _planned_backward(self, x, grad_out):
        if not self._planned(x):
            return False
        dtype, _, w_shape, y_shape = self._plan
        return (fast.ready(grad_out, y_shape, dtype)
                and fast.ready(self.grad_weight, w_shape, dtype)
                and (self.bias is None or fast.ready(self.grad_bias, w_shape[:1], dtype)))

    def forward(self, x):
        self._x = x
        if self._planned(x):
            y = self._empty(self._plan[3], x.dtype)
            self._run_forward(x, y)
            return y
        self._check_input(x)
        y = self._validated_forward(x)
        self._plan = (x.dtype, x.shape, self.weight.shape, y.shape) if y.size else None
        return y

    def _check_input(self, x):
        """Refuse an input this layer cannot take with a message that says how to fix it
        (the functional layer's own checks name the argument but not the layer)."""
        if not isinstance(x, np.ndarray):
            return          # functional's TypeError says what is expected
        name, dtype = type(self).__name__, self.weight.dtype
        if x.dtype in (np.float32, np.float64) and x.dtype != dtype:
            raise TypeError(f"{name}: the input has dtype {x.dtype} but the layer's weight is "
                            f"{dtype}; convert the input with x.astype(np.{dtype}) (or load "
                            f"the data with dtype=np.{dtype}), or the model with "
                            f"model.astype(np.{x.dtype})")
        ndim, size, what = self._input_features()
        if x.ndim == ndim and x.shape[1] != size:
            raise ValueError(f"{name}: expects {size} {what} per sample; got input of "
                             f"shape {x.shape}. The previous layer's output must match "
                             f"(model.summary(input_shape) lists every layer's output shape)")

    def _input_features(self):
        """``(ndim, size, what)``: inputs have ``ndim`` axes and ``size`` entries along axis 1,
        which count ``what`` (e.g. ``(4, 64, "input channels")``)."""
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad=True):
        x = self._x
        if self._planned_backward(x, grad_out):
            grad_x = self._empty(x.shape, x.dtype) if need_input_grad else None
            # The kernels always sum grad_bias somewhere; a layer without bias gets scratch.
            grad_bias = (self.grad_bias if self.bias is not None
                         else np.zeros(self.weight.shape[0], dtype=x.dtype))
            self._run_backward(x, grad_out, grad_x, grad_bias)
            return grad_x
        return self._validated_backward(x, grad_out, need_input_grad)
