"""What every fastconv optimizer shares: the params/closure contract, argument checks and the
plain-data state dictionary.

The contract is Torch7 ``optim``'s ``opfunc``: an optimizer owns no model; it sees one flat
parameter vector ``params`` (a view into the model's contiguous parameter storage, so it is
updated in place) and a ``closure() -> (loss, flat_grad)`` that evaluates the objective at the
current contents of ``params``. Line searches simply call the closure again.
"""
import numpy as np

from .._validation import FLOAT_DTYPES, check_float, check_int


def check_params(cls_name, params):
    """Validate the flat parameter vector and return it unchanged (never a copy).

    A copy would silently break the in-place contract: the model would never see the updates.
    """
    if not isinstance(params, np.ndarray):
        raise TypeError(f"{cls_name}: params must be a 1-D numpy.ndarray; "
                        f"got {type(params).__name__}")
    if params.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{cls_name}: params must have dtype float32 or float64; "
                        f"got {params.dtype}")
    if params.ndim != 1:
        raise ValueError(f"{cls_name}: params must be 1-D (the flat parameter vector); "
                         f"got shape {params.shape}")
    if params.size == 0:
        raise ValueError(f"{cls_name}: params must not be empty")
    if not params.flags.writeable:
        raise ValueError(f"{cls_name}: params must be writeable (it is updated in place)")
    return params


def check_real(cls_name, name, value, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a float after checking it is a finite real inside the given bounds.

    ``low_open``/``high_open`` exclude the bound itself. Booleans are rejected: ``lr=True``
    is a bug, not ``lr=1.0``. The checks and messages are fastconv's one validator family
    (:func:`fastconv._validation.check_float`).
    """
    return check_float(cls_name, name, value, minimum=low, maximum=high,
                       min_inclusive=not low_open, max_inclusive=not high_open)


def check_count(cls_name, name, value, low=1):
    """Return ``value`` as an int after checking it is an integer >= ``low``
    (:func:`fastconv._validation.check_int`)."""
    return check_int(cls_name, name, value, minimum=low)


def as_scalar(value, kind=float):
    """Turn a state-dict entry back into a Python scalar.

    ``np.savez``/``np.load`` turn every scalar into a 0-d array; accepting both keeps
    checkpoints written either way loadable.
    """
    if isinstance(value, np.ndarray):
        value = value.item()
    return kind(value)


class Optimizer:
    """Base class: holds ``params`` and evaluates closures safely.

    Subclasses implement ``step(closure) -> list of float`` and the pair
    ``state_dict()``/``load_state_dict(d)``. The state dictionary is flat (string keys,
    values that are Python scalars, strings or numpy arrays) so that ``np.savez(**d)`` can
    store it and JSON can hold its scalars; it includes the hyperparameters, so loading it
    into a freshly built optimizer resumes bit for bit.
    """

    def __init__(self, params):
        self.params = check_params(type(self).__name__, params)

    def _evaluate(self, closure, copy=True):
        """Call ``closure()`` and return ``(float(loss), grad)`` with ``grad`` checked.

        ``copy=True`` returns a private copy: closures usually hand back the model's own
        gradient buffer, which the next evaluation overwrites, so anything kept across
        evaluations must be copied. Optimizers that use the gradient once and never write
        to it pass ``copy=False`` and save a pass over memory.
        """
        name = type(self).__name__
        out = closure()
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"{name}: closure must return a tuple (loss, flat_grad); "
                            f"got {type(out).__name__}")
        loss, grad = out
        grad = np.asarray(grad)
        if grad.shape != self.params.shape:
            raise ValueError(f"{name}: closure returned a gradient of shape {grad.shape}; "
                             f"expected {self.params.shape} (the shape of params)")
        if grad.dtype != self.params.dtype:
            grad = grad.astype(self.params.dtype)
        elif copy:
            grad = grad.copy()
        return float(loss), grad

    def _check_state_name(self, d):
        name = str(as_scalar(d["optimizer"], str)) if "optimizer" in d else None
        if name != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state belongs to "
                             f"optimizer {name!r}")

    def _load_array(self, d, key):
        arr = np.array(d[key], dtype=self.params.dtype, copy=True)
        if arr.shape[-1:] != self.params.shape:
            raise ValueError(f"{type(self).__name__}.load_state_dict: {key} has shape "
                             f"{arr.shape}, incompatible with params of shape "
                             f"{self.params.shape}")
        return arr


def dot(a, b):
    """<a, b> as a float64 scalar (the line searches' curvature and slope terms)."""
    return np.float64(np.dot(a, b))


def axpy(y, a, x):
    """``y += a * x`` in place, with the scalar rounded to ``y``'s dtype first.

    Torch's ``x:add(a, d)`` on a FloatTensor converts ``a`` to float; doing the same keeps
    float32 updates in float32 instead of promoting a temporary to float64.
    """
    y += y.dtype.type(a) * x
    return y
