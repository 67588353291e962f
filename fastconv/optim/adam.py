"""Adam and AdamW, following PyTorch's single-tensor implementation (``foreach=False``).

One call of :meth:`Adam.step` evaluates the closure once and makes one update, with ``t``
counting updates from 1 (``torch/optim/adam.py`` ``_single_tensor_adam``)::

    x   = x * (1 - lr * weight_decay)            AdamW only (decoupled weight decay)
    g   = df/dx + weight_decay * x               Adam only (L2 penalty in the gradient)
    m   = lerp(m, g, 1 - beta1)                  first moment
    v   = v * beta2 + (1 - beta2) * g * g        second moment
    v^  = max(v^, v)                             amsgrad only; v^ replaces v below
    x   = x + (-lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

The scalar factors (bias corrections, step size) are computed in double precision, as
PyTorch does in Python, and rounded to the dtype of ``params`` where they meet an array. The
array operations come in PyTorch's order: ``lerp`` with its two forms (``m + w (g - m)``
for a weight below 0.5, else ``g - (g - m)(1 - w)``), ``(1 - beta2) * g`` before the second
``* g``, the step size times ``m`` before the division by the denominator.

Where float32 results still differ from PyTorch's, by at most a unit in the last place per
operation: PyTorch's vectorised CPU kernels fuse the multiply-add of ``lerp``, ``addcmul``
and ``add(alpha=)`` into one rounding (FMA), and its AVX-512 float32 ``sqrt`` is not
correctly rounded. numpy can express neither without float64 temporaries, which would
double the memory traffic of an update that is memory-bound, so the tests compare to
float32 rounding instead of bit for bit.

Every array operation is in place, into the moment buffers or into two scratch vectors
allocated once: an update costs no allocation, which matters at ~1M parameters and one
update per mini-batch.
"""
import numpy as np

from ._base import Optimizer, as_scalar, check_real
from ._registry import register_optimizer


def _check_beta(cls_name, name, value):
    return check_real(cls_name, name, value, low=0.0, high=1.0, high_open=True)


@register_optimizer("adam")
class Adam(Optimizer):
    """Adam (Kingma and Ba), optionally AMSGrad, with L2 weight decay in the gradient.

    Parameters
    ----------
    params : numpy.ndarray
        Flat float32/float64 parameter vector, updated in place.
    lr : float, default 1e-3
        Learning rate, >= 0. A plain attribute: learning-rate schedules set it between steps.
    betas : pair of float, default (0.9, 0.999)
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected ``sqrt(v)`` so the denominator is never 0, >= 0.
    weight_decay : float, default 0
        L2 penalty coefficient, >= 0: ``weight_decay * x`` is added to the gradient (and so
        rescaled by the adaptive denominator; :class:`AdamW` decouples it instead).
    amsgrad : bool, default False
        Normalise by the running maximum of the second moment (Reddi et al.).

    Attributes
    ----------
    lr : float
        Learning rate of the next update.
    beta1 : float
        First-moment decay of the next update; a property over ``betas[0]`` that one-cycle
        schedules cycle between steps, as PyTorch's ``OneCycleLR`` does with ``betas``.
    n_updates : int
        Updates made so far (PyTorch's ``state["step"]``).
    exp_avg, exp_avg_sq, max_exp_avg_sq : numpy.ndarray or None
        The moment averages (``max_exp_avg_sq`` only with ``amsgrad``).

    Notes
    -----
    ``step`` returns ``[f(x)]``, the loss evaluated *before* the update.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params)
        name = type(self).__name__
        self.lr = check_real(name, "lr", lr, low=0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{name}: betas must be a pair (beta1, beta2); got {betas!r}")
        self.betas = (_check_beta(name, "betas[0]", betas[0]),
                      _check_beta(name, "betas[1]", betas[1]))
        self.eps = check_real(name, "eps", eps, low=0.0)
        self.weight_decay = check_real(name, "weight_decay", weight_decay, low=0.0)
        if not isinstance(amsgrad, (bool, np.bool_)):
            raise TypeError(f"{name}: amsgrad must be a bool; got {type(amsgrad).__name__}")
        self.amsgrad = bool(amsgrad)
        self.n_updates = 0
        self.exp_avg = np.zeros_like(self.params)
        self.exp_avg_sq = np.zeros_like(self.params)
        self.max_exp_avg_sq = np.zeros_like(self.params) if self.amsgrad else None
        self._scratch = None

    @property
    def beta1(self):
        """First-moment decay rate ``betas[0]``, in [0, 1)."""
        return self.betas[0]

    @beta1.setter
    def beta1(self, value):
        self.betas = (_check_beta(type(self).__name__, "beta1", value), self.betas[1])

    def _buffers(self):
        # Scratch is not state: it is rebuilt on demand, never saved, and reused every step.
        if self._scratch is None:
            self._scratch = (np.empty_like(self.params), np.empty_like(self.params))
        return self._scratch

    def step(self, closure):
        """Evaluate ``closure`` once and update ``params`` in place.

        Returns
        -------
        list of float
            ``[loss]`` evaluated at the parameters before the update.
        """
        x = self.params
        loss, grad = self._evaluate(closure, copy=False)
        real = x.dtype.type
        buf, buf2 = self._buffers()
        beta1, beta2 = self.betas
        self.n_updates += 1
        t = self.n_updates

        if self.weight_decay != 0:
            if self._decoupled:
                x *= real(1 - self.lr * self.weight_decay)
            else:
                np.multiply(x, real(self.weight_decay), out=buf2)
                buf2 += grad
                grad = buf2

        # PyTorch's lerp switches form at weight 0.5 so that the weight multiplying the
        # difference is at most 0.5 in size: the result stays within rounding of the nearer
        # end point.
        w = real(1 - beta1)
        np.subtract(grad, self.exp_avg, out=buf)
        if abs(w) < 0.5:
            buf *= w
            self.exp_avg += buf
        else:
            buf *= w - real(1)
            np.add(grad, buf, out=self.exp_avg)

        self.exp_avg_sq *= real(beta2)
        np.multiply(grad, real(1 - beta2), out=buf)
        buf *= grad
        self.exp_avg_sq += buf

        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5

        second = self.exp_avg_sq
        if self.amsgrad:
            np.maximum(self.max_exp_avg_sq, self.exp_avg_sq, out=self.max_exp_avg_sq)
            second = self.max_exp_avg_sq
        np.sqrt(second, out=buf)
        buf /= real(bias_correction2_sqrt)
        buf += real(self.eps)
        # buf2 may hold the L2-decayed gradient, which is no longer needed here.
        np.multiply(self.exp_avg, real(-step_size), out=buf2)
        buf2 /= buf
        x += buf2
        return [loss]

    def state_dict(self):
        """Hyperparameters, update counter and moment averages, as plain data."""
        d = {"optimizer": type(self).__name__, "lr": self.lr, "beta1": self.betas[0],
             "beta2": self.betas[1], "eps": self.eps, "weight_decay": self.weight_decay,
             "amsgrad": self.amsgrad, "n_updates": self.n_updates,
             "exp_avg": self.exp_avg.copy(), "exp_avg_sq": self.exp_avg_sq.copy()}
        if self.amsgrad:
            d["max_exp_avg_sq"] = self.max_exp_avg_sq.copy()
        return d

    def load_state_dict(self, d):
        """Restore everything :meth:`state_dict` saved (hyperparameters included)."""
        self._check_state_name(d)
        amsgrad = as_scalar(d["amsgrad"], bool)
        if amsgrad and "max_exp_avg_sq" not in d:
            raise ValueError(f"{type(self).__name__}.load_state_dict: amsgrad state lacks "
                             f"max_exp_avg_sq")
        exp_avg = self._load_array(d, "exp_avg")
        exp_avg_sq = self._load_array(d, "exp_avg_sq")
        max_exp_avg_sq = self._load_array(d, "max_exp_avg_sq") if amsgrad else None
        self.lr = as_scalar(d["lr"])
        self.betas = (as_scalar(d["beta1"]), as_scalar(d["beta2"]))
        self.eps = as_scalar(d["eps"])
        self.weight_decay = as_scalar(d["weight_decay"])
        self.amsgrad = amsgrad
        self.n_updates = as_scalar(d["n_updates"], int)
        self.exp_avg, self.exp_avg_sq, self.max_exp_avg_sq = exp_avg, exp_avg_sq, max_exp_avg_sq


@register_optimizer("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter).

    Before the Adam update, ``params *= 1 - lr * weight_decay``; the gradient itself is not
    changed, so the decay is not rescaled by the adaptive denominator. Parameters are those
    of :class:`Adam`, except that ``weight_decay`` defaults to ``1e-2`` (PyTorch's default).
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
