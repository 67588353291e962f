"""What Conv2d and Linear share: Torch7-initialized weight and bias, and the fast path."""
import numpy as np

from . import _fastpath as fast
from ._init import as_generator, check_dtype, torch7_uniform
from .module import Module


class WeightedLayer(Module):
    """A layer with ``weight`` (out, ...) and an optional ``bias`` (out,).

    Subclasses supply the validated calls (``_validated_forward``, ``_validated_backward``,
    through :mod:`fastconv.functional`, returning the result and the kernel arguments they
    validated) and the direct kernel calls (``_run_forward``, ``_run_backward``) that the
    fast path makes while a call matches the plan of a validated one (see
    :mod:`fastconv.nn._fastpath`).
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
        self._plan_forward = self._plan_backward = None

    def forward(self, x):
        self._x = None      # cached only once forward succeeds
        plan = self._plan_forward
        n_threads = fast.threads()
        if plan is not None and plan.admits(self, n_threads, (x,), (self.weight, self.bias)):
            y = self._empty(plan.out_shape, x.dtype)
            self._run_forward(x, y, plan.args, n_threads)
        else:
            self._check_input(x)
            y, args = self._validated_forward(x)
            self._plan_forward = fast.plan_if_nonempty(self, (x,), (self.weight, self.bias),
                                                       out_shape=y.shape, args=args)
        self._x = x
        return y

    def _check_input(self, x):
        """Refuse an input this layer cannot take with a message that says how to fix it
        (the functional layer's own checks name the argument but not the layer)."""
        self._check_params()
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
        x = self._saved(self._x)
        plan = self._plan_backward
        n_threads = fast.threads()
        reads = (self.weight, self.bias)
        writes = (self.grad_weight, self.grad_bias)
        if plan is not None and plan.admits(self, n_threads, (x, grad_out), reads, writes):
            grad_x = self._empty(x.shape, x.dtype) if need_input_grad else None
            # The kernels always sum grad_bias somewhere; a layer without bias gets scratch.
            grad_bias = (self.grad_bias if self.bias is not None
                         else np.zeros(self.weight.shape[0], dtype=x.dtype))
            self._run_backward(x, grad_out, grad_x, grad_bias, plan.args, n_threads)
            return grad_x
        self._refuse_aliased_gradients()
        grad_x, args = self._validated_backward(x, grad_out, need_input_grad)
        self._plan_backward = fast.plan_if_nonempty(self, (x, grad_out), reads, writes,
                                                    out_shape=x.shape, args=args)
        return grad_x

    def _refuse_aliased_gradients(self):
        """A gradient buffer sharing memory with a parameter would overwrite it: refuse,
        whether or not this backward reads the parameter."""
        for name in self.param_names:
            g = getattr(self, "grad_" + name)
            for other in (self.weight, self.bias):
                if g is not None and other is not None and np.shares_memory(g, other):
                    raise ValueError(f"{type(self).__name__}.backward: grad_{name} must not "
                                     f"share memory with a parameter")
