"""Stochastic gradient descent with Torch7 ``optim.sgd`` semantics.

One call of :meth:`SGD.step` evaluates the closure once and makes one update::

    g    = df/dx + weight_decay * x                      (L2 penalty, added to the gradient)
    v    = g                                  on the first momentum step
    v    = momentum * v + (1 - dampening) * g on later steps
    g    = g + momentum * v   if nesterov,  else  g = v   (only when momentum != 0)
    lr_t = lr / (1 + n_updates * lr_decay)                 (n_updates: updates made before)
    x    = x - lr_t * g

Torch details kept on purpose (read from ``torch/optim`` ``sgd.lua``):

* ``dampening`` defaults to ``momentum`` (``local damp = config.dampening or mom``), so the
  default momentum update is ``v = m v + (1 - m) g``, an exponential moving average, and not
  PyTorch's ``v = m v + g``. Pass ``dampening=0`` for the latter.
* The first momentum step copies the gradient into the buffer without dampening.
* Nesterov momentum requires ``momentum > 0`` and ``dampening == 0`` (Torch asserts it);
  because of the default above, nesterov needs an explicit ``dampening=0``.
* ``lr_decay`` defaults to the homework driver's ``1e-7`` (``sgd.lua``'s own default is 0).
"""
import numpy as np

from .._kernels import _vector
from .._threads import effective_n_threads
from ._base import Optimizer, as_scalar, check_real
from ._registry import register_optimizer


def _axpy(alpha, g, x):
    """x += alpha * g in place, in one pass and without a temporary.

    ``x -= lr * g`` allocates and fills a gradient-sized temporary every update, which at
    batch size 1 costs as much as a small layer; the kernel also splits the pass between
    fastconv's threads (it is memory-bound).
    """
    if (x.flags.c_contiguous and g.flags.c_contiguous and g.dtype == x.dtype
            and x.ndim == 1 and g.shape == x.shape):
        _vector.axpy(alpha, g, x, effective_n_threads())
    else:
        x += alpha * g


@register_optimizer("sgd")
class SGD(Optimizer):
    """Torch7-style SGD with weight decay, momentum/dampening, Nesterov and 1/t lr decay.

    Parameters
    ----------
    params : numpy.ndarray
        Flat float32/float64 parameter vector, updated in place.
    lr : float, default 1e-3
        Learning rate (``learningRate``), >= 0.
    lr_decay : float, default 1e-7
        ``learningRateDecay``: ``lr_t = lr / (1 + n_updates * lr_decay)``, >= 0.
    weight_decay : float, default 0
        L2 penalty coefficient added to the gradient as ``weight_decay * x``, >= 0.
    momentum : float, default 0
        Momentum coefficient, >= 0.
    dampening : float or None, default None
        Dampening of the momentum update; ``None`` means "equal to momentum" (Torch).
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening=0``.

    Notes
    -----
    ``step`` returns ``[f(x)]``, the loss evaluated *before* the update (Torch's ``{fx}``).
    """

    def __init__(self, params, lr=1e-3, lr_decay=1e-7, weight_decay=0.0, momentum=0.0,
                 dampening=None, nesterov=False):
        super().__init__(params)
        name = type(self).__name__
        self.lr = check_real(name, "lr", lr, low=0.0)
        self.lr_decay = check_real(name, "lr_decay", lr_decay, low=0.0)
        self.weight_decay = check_real(name, "weight_decay", weight_decay, low=0.0)
        self.momentum = check_real(name, "momentum", momentum, low=0.0)
        self.dampening = (self.momentum if dampening is None
                          else check_real(name, "dampening", dampening))
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"{name}: nesterov must be a bool; got {type(nesterov).__name__}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"{name}: nesterov requires momentum > 0 and dampening = 0 "
                             f"(pass dampening=0: Torch's default dampening equals momentum); "
                             f"got momentum={self.momentum}, dampening={self.dampening}")
        self.n_updates = 0
        self.momentum_buffer = None

    def current_lr(self):
        """The learning rate the next update will use: ``lr / (1 + n_updates * lr_decay)``."""
        return self.lr / (1 + self.n_updates * self.lr_decay)

    def step(self, closure):
        """Evaluate ``closure`` once and update ``params`` in place.

        Returns
        -------
        list of float
            ``[loss]`` evaluated at the parameters before the update.
        """
        x = self.params
        loss, grad = self._evaluate(closure, copy=False)
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * x
        if self.momentum != 0:
            if self.momentum_buffer is None:
                self.momentum_buffer = grad.copy()
            else:
                self.momentum_buffer *= self.momentum
                self.momentum_buffer += (1 - self.dampening) * grad
            if self.nesterov:
                grad = grad + self.momentum * self.momentum_buffer
            else:
                grad = self.momentum_buffer
        _axpy(-self.current_lr(), grad, x)
        self.n_updates += 1
        return [loss]

    def state_dict(self):
        """Hyperparameters, update counter and momentum buffer (when it exists), as plain data."""
        d = {"optimizer": "SGD", "lr": self.lr, "lr_decay": self.lr_decay,
             "weight_decay": self.weight_decay, "momentum": self.momentum,
             "dampening": self.dampening, "nesterov": self.nesterov,
             "n_updates": self.n_updates}
        if self.momentum_buffer is not None:
            d["momentum_buffer"] = self.momentum_buffer.copy()
        return d

    def load_state_dict(self, d):
        """Restore everything :meth:`state_dict` saved (hyperparameters included)."""
        self._check_state_name(d)
        self.lr = as_scalar(d["lr"])
        self.lr_decay = as_scalar(d["lr_decay"])
        self.weight_decay = as_scalar(d["weight_decay"])
        self.momentum = as_scalar(d["momentum"])
        self.dampening = as_scalar(d["dampening"])
        self.nesterov = as_scalar(d["nesterov"], bool)
        self.n_updates = as_scalar(d["n_updates"], int)
        self.momentum_buffer = (self._load_array(d, "momentum_buffer")
                                if "momentum_buffer" in d else None)
