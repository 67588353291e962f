"""Loss criteria: ``forward(output, target) -> float`` then ``backward() -> dL/d output``.

Each matches a model head (see :func:`fastconv.nn.models.build_model`): ``nll`` expects
log-probabilities (the model ends in LogSoftmax), ``mse`` expects tanh outputs compared with
+1 for the true class and -1 elsewhere, ``margin`` takes raw scores.

A criterion's settings are its constructor's arguments: :meth:`config` returns them with the
name (``{"name": "nll", "label_smoothing": 0.1}``), and :func:`make_loss` rebuilds the
criterion from that dict or from the name and keyword arguments.
"""
import inspect

import numpy as np

from .. import functional as F
from .._kernels import _loss as _k
from .._validation import check_float, check_target
from . import _fastpath as fast

_INTP = np.dtype(np.intp)

__all__ = ["NLLLoss", "MSELoss", "MarginLoss", "make_loss", "LOSSES"]


class _Criterion:
    hyper_names = ()

    def __init__(self):
        self._output = self._target = None

    def __call__(self, output, target):
        return self.forward(output, target)

    def forward(self, output, target):
        """Mean loss over the batch (a float); remembers what :meth:`backward` needs.

        Parameters
        ----------
        output : ndarray, shape (N, K)
            The model's output (the head this loss expects, see the module docstring).
        target : ndarray of int, shape (N,)
            Class labels in ``[0, K)``.
        """
        raise NotImplementedError

    def backward(self, grad_out=1.0):
        """dL/d output of the last :meth:`forward`, scaled by ``grad_out``."""
        raise NotImplementedError

    def get_config(self):
        """The constructor's arguments (JSON-able), without the name."""
        return {}

    def config(self):
        """``{"name": ..., **settings}``: JSON-able, rebuilt by :func:`make_loss`."""
        return {"name": self.name, **self.get_config()}

    def __repr__(self):
        settings = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({settings})"


class NLLLoss(_Criterion):
    """Mean over the batch of -logp[n, target[n]], optionally with label smoothing.

    Parameters
    ----------
    label_smoothing : float
        eps in [0, 1) (PyTorch's definition): the target distribution puts ``1 - eps`` on
        the label and spreads ``eps`` evenly over all K classes, so that
        ``L = (1 - eps) * nll + eps * mean_k(-logp[n, k])``, averaged over the batch. The
        default 0 is plain NLL, computed exactly as before the option existed. On the
        LogSoftmax head this is ``torch.nn.functional.cross_entropy(x, t,
        label_smoothing=eps)``.
    """

    name = "nll"
    head = "LogSoftmax"
    # A fast-path plan records it: a criterion whose smoothing changes is validated again.
    hyper_names = ("label_smoothing",)

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = check_float("NLLLoss", "label_smoothing", label_smoothing,
                                           minimum=0.0, maximum=1.0, max_inclusive=False)
        self._plan_forward = self._plan_backward = None

    def get_config(self):
        return {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}

    def forward(self, logp, target):
        self._output, self._target = logp, target
        plan = self._plan_forward
        eps = self.label_smoothing
        # Labels are read by the kernel as row offsets: range-checked on every call, since
        # an array of the planned shape may hold anything.
        if plan is not None and plan.admits(self, 0, (logp, target)) \
                and _k.labels_in_range(target, plan.out_shape[1]):
            if eps:
                return float(_k.nll_smooth_loss_forward(logp, target, eps))
            return float(_k.nll_loss_forward(logp, target))
        loss = F.nll_loss_forward(logp, target, label_smoothing=eps)
        self._plan_forward = fast.Plan(self, 0, (logp, target), out_shape=logp.shape) \
            if logp.size and fast.ready(target, logp.shape[:1], _INTP) else None
        return loss

    def backward(self, grad_out=1.0):
        if self._output is None:
            raise RuntimeError("NLLLoss.backward: call forward first")
        logp, target = self._output, self._target
        plan = self._plan_backward
        n_threads = fast.threads()
        # The labels may have changed since forward: checked again here.
        if type(grad_out) is float and plan is not None \
                and plan.admits(self, n_threads, (logp, target)) \
                and _k.labels_in_range(target, plan.out_shape[1]):
            grad = np.empty(plan.out_shape, dtype=logp.dtype)
            if self.label_smoothing:
                _k.nll_smooth_loss_backward(target, self.label_smoothing,
                                            grad_out / plan.out_shape[0], grad, n_threads)
            else:
                _k.nll_loss_backward(target, grad_out / plan.out_shape[0], grad, n_threads)
            return grad
        grad = F.nll_loss_backward(logp, target, grad_out, label_smoothing=self.label_smoothing)
        self._plan_backward = fast.Plan(self, n_threads, (logp, target), out_shape=logp.shape) \
            if logp.size and fast.ready(target, logp.shape[:1], _INTP) else None
        return grad


class MSELoss(_Criterion):
    """Mean over all elements of (y - t)^2, t = +1 at the true class and -1 elsewhere."""

    name = "mse"
    head = "Tanh"

    def forward(self, y, target):
        if not isinstance(y, np.ndarray) or y.ndim != 2:
            raise ValueError(f"MSELoss: output must be a 2-D array (N, K); "
                             f"got {getattr(y, 'shape', type(y).__name__)}")
        target = check_target("MSELoss", target, y.shape[0], y.shape[1])
        t = np.full(y.shape, -1.0, dtype=y.dtype)
        t[np.arange(y.shape[0]), target] = 1.0
        self._output, self._target = y, t
        return F.mse_loss_forward(y, t)

    def backward(self, grad_out=1.0):
        if self._output is None:
            raise RuntimeError("MSELoss.backward: call forward first")
        return F.mse_loss_backward(self._output, self._target, grad_out)


class MarginLoss(_Criterion):
    """Multi-class hinge loss (Torch7 MultiMarginCriterion, p = 1)."""

    name = "margin"
    head = None

    def __init__(self, margin=1.0):
        super().__init__()
        self.margin = check_float("MarginLoss", "margin", margin, minimum=0.0)

    def get_config(self):
        return {"margin": self.margin}

    def forward(self, x, target):
        self._output, self._target = x, target
        return F.margin_loss_forward(x, target, self.margin)

    def backward(self, grad_out=1.0):
        if self._output is None:
            raise RuntimeError("MarginLoss.backward: call forward first")
        return F.margin_loss_backward(self._output, self._target, self.margin, grad_out)


LOSSES = {"nll": NLLLoss, "mse": MSELoss, "margin": MarginLoss}


def make_loss(name, **options):
    """Return the criterion named ``nll``, ``mse`` or ``margin``, built with ``options``.

    Parameters
    ----------
    name : str or dict
        A name from :data:`LOSSES`, or a criterion's :meth:`config` (``{"name": "nll",
        "label_smoothing": 0.1}``), whose settings are then the options.
    **options
        The criterion's constructor arguments: ``label_smoothing`` for ``nll``, ``margin``
        for ``margin``.

    Examples
    --------
    >>> make_loss("nll", label_smoothing=0.1).config()
    {'name': 'nll', 'label_smoothing': 0.1}
    """
    if isinstance(name, dict):
        config = dict(name)
        if "name" not in config:
            raise ValueError(f"make_loss: a loss config must have a 'name'; got {name!r}")
        name = config.pop("name")
        options = {**config, **options}
    try:
        cls = LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}") from None
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"make_loss: loss {name!r} takes "
                        f"{'options ' + ', '.join(accepted) if accepted else 'no options'}; "
                        f"got {', '.join(unknown)}")
    return cls(**options)
