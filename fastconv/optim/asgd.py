"""Averaged SGD (Bottou's ASGD, as in Torch7 ``optim.asgd`` and Bottou's sgd-2.0).

The update, quoted from ``torch/optim`` ``asgd.lua``::

       x := (1 - lambda eta_t) x - eta_t df/dx(z,x)
       a := a + mu_t [ x - a ]

    eta_t = eta0 / (1 + lambda eta0 t) ^ 0.75
     mu_t = 1/max(1,t-t0)

(the exponent 0.75 is the ``alpha`` argument). ``t`` counts updates, starting at 0, and
``eta_t``/``mu_t`` are recomputed *after* each update, so the very first update uses
``eta_0 = eta0`` and ``mu_0 = 1``. While ``mu_t == 1`` (the first ``t0 + 1`` updates) the
average is simply a copy of ``x``; averaging proper starts after ``t0`` updates.

``lambda`` both decays the step size and shrinks ``x`` every update (an L2 penalty of
``lambda / 2 * |x|^2``), so ASGD converges to the minimizer of ``f(x) + lambda/2 |x|^2``,
not of ``f`` itself.

Defaults: ``lr`` (Torch's ``eta0``) is the homework's ``learningRate`` 1e-3 (``asgd.lua``
says 1e-4); ``t0`` is ``asgd.lua``'s 1e6, while the homework driver passes
``t0 = t0_epochs * train_size``. Evaluate with the averaged vector
(:meth:`ASGD.swap_in_average`), as the Torch tutorial does.
"""
import contextlib
import math

from ._base import Optimizer, as_scalar, check_real
from ._registry import register_optimizer


@register_optimizer("asgd")
class ASGD(Optimizer):
    """Averaged stochastic gradient descent.

    Parameters
    ----------
    params : numpy.ndarray
        Flat float32/float64 parameter vector, updated in place.
    lr : float, default 1e-3
        ``eta0``, the initial step size, >= 0.
    lambd : float, default 1e-4
        ``lambda``: decay term of the step size and L2 shrinkage of ``x``, >= 0.
    alpha : float, default 0.75
        Power in ``eta_t = eta0 / (1 + lambda eta0 t) ** alpha``, >= 0.
    t0 : float, default 1e6
        Number of updates after which averaging starts, >= 0.

    Attributes
    ----------
    t : int
        Updates made so far.
    eta_t, mu_t : float
        Step size and averaging rate the next update will use.
    ax : numpy.ndarray
        The averaged parameters (starts as a copy of ``params``; Torch creates it at the first
        update, whose ``mu_t = 1`` overwrites it with ``x`` anyway).
    """

    def __init__(self, params, lr=1e-3, lambd=1e-4, alpha=0.75, t0=1e6):
        super().__init__(params)
        name = type(self).__name__
        self.lr = check_real(name, "lr", lr, low=0.0)
        self.lambd = check_real(name, "lambd", lambd, low=0.0)
        self.alpha = check_real(name, "alpha", alpha, low=0.0)
        self.t0 = check_real(name, "t0", t0, low=0.0)
        self.t = 0
        self.eta_t = self.lr
        self.mu_t = 1.0
        self.ax = self.params.copy()

    #: Built by name (:func:`fastconv.optim.spec`), ASGD also takes ``t0_epochs``.
    spec_options = ("t0_epochs",)

    @classmethod
    def from_options(cls, params, context, t0_epochs=None, **options):
        """Build for a training run: ``t0_epochs`` (the homework's ``t0``) starts averaging
        after ``t0_epochs * n_train`` updates, as the Torch7 driver's ``t0 = trsize * t0``
        does at every batch size; give it or ``t0``, not both."""
        if t0_epochs is not None:
            if "t0" in options:
                raise ValueError("ASGD: give t0 (updates) or t0_epochs, not both")
            t0_epochs = check_real(cls.__name__, "t0_epochs", t0_epochs, low=0)
            options["t0"] = t0_epochs * context.n_train
        return cls(params, **options)

    def step(self, closure):
        """Evaluate ``closure`` once, update ``params`` in place and the average ``ax``.

        Returns
        -------
        list of float
            ``[loss]`` evaluated at the parameters before the update.
        """
        x = self.params
        loss, grad = self._evaluate(closure, copy=False)
        x *= 1 - self.lambd * self.eta_t
        x -= self.eta_t * grad
        if self.mu_t != 1:
            self.ax += self.mu_t * (x - self.ax)
        else:
            self.ax[...] = x
        self.t += 1
        self.eta_t = self.lr / math.pow(1 + self.lambd * self.lr * self.t, self.alpha)
        self.mu_t = 1 / max(1.0, self.t - self.t0)
        return [loss]

    def averaged(self):
        """Return a copy of the averaged parameter vector ``ax``."""
        return self.ax.copy()

    @contextlib.contextmanager
    def swap_in_average(self):
        """Temporarily copy ``ax`` into ``params``; restore the SGD iterate on exit.

        Use it to evaluate the model with the averaged weights::

            with opt.swap_in_average():
                test_accuracy = evaluate(model)

        The restore runs even if the body raises, so training can always continue.
        """
        saved = self.params.copy()
        self.params[...] = self.ax
        try:
            yield self.params
        finally:
            self.params[...] = saved

    def state_dict(self):
        """Hyperparameters, ``t``, ``eta_t``, ``mu_t`` and the average ``ax``, as plain data."""
        return {"optimizer": "ASGD", "lr": self.lr, "lambd": self.lambd, "alpha": self.alpha,
                "t0": self.t0, "t": self.t, "eta_t": self.eta_t, "mu_t": self.mu_t,
                "ax": self.ax.copy()}

    def load_state_dict(self, d):
        """Restore everything :meth:`state_dict` saved (hyperparameters included)."""
        self._check_state_name(d)
        self.lr = as_scalar(d["lr"])
        self.lambd = as_scalar(d["lambd"])
        self.alpha = as_scalar(d["alpha"])
        self.t0 = as_scalar(d["t0"])
        self.t = as_scalar(d["t"], int)
        self.eta_t = as_scalar(d["eta_t"])
        self.mu_t = as_scalar(d["mu_t"])
        self.ax = self._load_array(d, "ax")
