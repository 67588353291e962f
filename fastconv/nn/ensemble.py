"""Ensembles: several trained networks voting with their averaged class probabilities.

What the members' outputs are decides how they are averaged, so that the ensemble's output
is of the same kind as a member's and every loss and ``argmax`` apply to it unchanged:

- members ending in ``LogSoftmax`` (the ``nll`` head): ``log(mean_i exp(y_i))``, the log of
  the mean probability, so that ``nll`` and ``argmax`` read it as a member's output;
- ending in ``Softmax``: ``mean_i y_i``, the mean probability;
- ending in anything else (``Tanh`` for ``mse``, raw scores for ``margin``): ``mean_i y_i``,
  the mean output, on which those losses work unchanged.

Members must all end in the same kind of layer: a log-probability and a Tanh output are not
on one scale, and no average of them means anything. A member's input may be its own
(members trained with different input normalizations each see the input prepared their
way), so :meth:`Ensemble.forward` takes one array for all or one per member.
"""
import numpy as np

from .containers import _check_used_once
from .module import Module

__all__ = ["Ensemble"]


def _last_layer(module):
    """The layer that produces ``module``'s output: the last leaf of its last children."""
    while module.children():
        module = module.children()[-1]
    return module


def _head(module):
    """How a member's outputs are averaged: ``"LogSoftmax"``, ``"Softmax"``, or the name of
    the last layer (its outputs are averaged as they are)."""
    return type(_last_layer(module)).__name__


def _member_error(exc, index):
    """``exc`` (a member's TypeError or ValueError) as the same type naming the member."""
    try:
        return type(exc)(f"Ensemble member {index}: {exc}")
    except Exception:       # an error type that takes other arguments: keep it as it is
        return exc


class Ensemble(Module):
    """The average of several networks' class probabilities (or outputs).

    Parameters
    ----------
    models : sequence of Module
        The members, at least one, each a separate module object. All must end in the same
        kind of head (see the module docstring); a member ending in ``LogSoftmax`` makes the
        ensemble return log-probabilities.
    input_shape : tuple of int, optional
        One sample's shape, e.g. ``(1, 32, 32)``. When given, each member is run once, in
        evaluation mode, on a zero sample of this shape, and every member must take it and
        give the same number of outputs (classes); otherwise that is first checked on
        :meth:`forward`'s outputs.

    Attributes
    ----------
    members : list of Module
    head : str
        ``"LogSoftmax"``, ``"Softmax"`` or the class name of the members' last layer.
    outputs : list of ndarray or None
        Each member's output of the last :meth:`forward`.

    Raises
    ------
    TypeError
        A member is not a Module.
    ValueError
        No member; one module given twice; members ending in different heads; members
        disagreeing on ``input_shape`` or on their number of outputs.

    Notes
    -----
    For log-probabilities ``y_i`` the output ``log(1/M sum_i exp(y_i))`` is computed as
    ``m + log(sum_i exp(y_i - m)) - log(M)`` with ``m = max_i y_i``, so that a class every
    member finds very unlikely (``y_i`` around -1000) keeps a finite log-probability instead
    of ``log(0)``.

    ``backward`` is supported: with ``g`` the gradient of the output, member ``i`` receives
    ``g * exp(y_i - y) / M`` for log-probabilities (its share of the mean probability) and
    ``g / M`` for the averaged heads; the input gradient is the sum over the members, or a
    list of one per member when each had its own input. An ensemble is not a model file:
    save each member with :func:`fastconv.save_model` and load them together with
    :func:`fastconv.load_ensemble`.

    Examples
    --------
    >>> from fastconv import nn
    >>> members = [nn.build_model("linear", seed=s) for s in (1, 2, 3)]
    >>> ensemble = nn.Ensemble(members, input_shape=(1, 32, 32)).eval()
    >>> ensemble.forward(np.zeros((4, 1, 32, 32), np.float32)).shape
    (4, 10)

    Shape:
        Input (N, ...) as each member takes it (one array, or a list of one per member);
        output (N, K) for K classes, as each member's.
    """

    def __init__(self, models, input_shape=None):
        super().__init__()
        if isinstance(models, Module):
            raise TypeError("Ensemble: models must be a list of Modules; got one "
                            f"{type(models).__name__} (pass [model] for an ensemble of one)")
        models = list(models)
        if not models:
            raise ValueError("Ensemble: models is empty; give at least one network")
        for i, m in enumerate(models):
            if not isinstance(m, Module):
                raise TypeError(f"Ensemble: member {i} must be a Module; got "
                                f"{type(m).__name__}")
        _check_used_once(models, "Ensemble")
        heads = [_head(m) for m in models]
        if len(set(heads)) > 1:
            first = next(i for i, h in enumerate(heads) if h != heads[0])
            raise ValueError(f"Ensemble: members end in different heads (member 0 in "
                             f"{heads[0]}, member {first} in {heads[first]}); their outputs "
                             f"cannot be averaged. Ensemble networks trained with one loss")
        self.members = models
        self.head = heads[0]
        self.outputs = None
        self._one_input = True
        if input_shape is not None:
            self._check_members(tuple(input_shape))

    def _check_members(self, input_shape):
        """Run each member once on a zero sample; refuse one that cannot take it or whose
        number of outputs differs from member 0's."""
        counts = []
        for i, m in enumerate(self.members):
            training = m.training
            m.eval()
            try:
                y = m.forward(np.zeros((1,) + input_shape, dtype=m.dtype or np.float32))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Ensemble: member {i} does not take inputs of shape "
                                 f"{input_shape} ({exc})") from None
            finally:
                m.train(training)
            counts.append(y.shape[1:])
            if counts[i] != counts[0]:
                raise ValueError(f"Ensemble: member {i} gives outputs of shape {counts[i]} "
                                 f"per sample, member 0 {counts[0]}; members must have the "
                                 f"same classes")

    def __call__(self, x):
        # Module.__call__ would suggest fixes for one array; a member's error already names
        # the member's layer and its fix (forward adds which member).
        return self.forward(x)

    def children(self):
        return self.members

    def __len__(self):
        return len(self.members)

    def __getitem__(self, i):
        return self.members[i]

    def _inputs(self, x):
        if isinstance(x, (list, tuple)):
            if len(x) != len(self.members):
                raise ValueError(f"Ensemble: got {len(x)} inputs for {len(self.members)} "
                                 f"members; pass one array for all, or one per member")
            return list(x), False
        return [x] * len(self.members), True

    def forward(self, x):
        """Each member's output on its input, averaged (see the module docstring).

        Parameters
        ----------
        x : ndarray or list of ndarray
            One batch for every member, or one per member (each prepared as that member's
            training data was); all with the same number of samples.

        Returns
        -------
        ndarray, shape (N, K)
        """
        inputs, self._one_input = self._inputs(x)
        outputs = []
        for i, (m, xi) in enumerate(zip(self.members, inputs)):
            try:
                y = m(xi)
            except (TypeError, ValueError) as exc:
                raise _member_error(exc, i) from None
            if outputs and y.shape != outputs[0].shape:
                raise ValueError(f"Ensemble: member {i} gave outputs of shape {y.shape}, "
                                 f"member 0 {outputs[0].shape}; members must take the same "
                                 f"samples and have the same classes")
            outputs.append(y)
        self.outputs = outputs
        return self.combine(outputs)

    def combine(self, outputs):
        """Average member outputs as this ensemble's head says (no member is run).

        Parameters
        ----------
        outputs : list of ndarray
            One (N, K) array per member, e.g. computed batch by batch elsewhere.

        Returns
        -------
        ndarray, shape (N, K)
            In the members' common dtype (float64 when they differ).
        """
        stack = np.stack(outputs)
        if self.head == "LogSoftmax":
            # Log of the mean probability, shifted by the largest member log-probability
            # (log-sum-exp): exp() of very negative log-probabilities would underflow to 0.
            top = stack.max(axis=0)
            return top + np.log(np.exp(stack - top).sum(axis=0)) - np.log(len(outputs))
        return stack.mean(axis=0)

    def backward(self, grad_out, need_input_grad=True):
        outputs = self._saved(self.outputs)
        n = len(outputs)
        if self.head == "LogSoftmax":
            y = self.combine(outputs)
            shares = [np.exp(yi - y) / n for yi in outputs]
        else:
            shares = [np.full_like(outputs[0], 1.0 / n)] * n
        grads = [m.backward(np.ascontiguousarray(grad_out * s, dtype=yi.dtype),
                            need_input_grad=need_input_grad)
                 for m, s, yi in zip(self.members, shares, outputs)]
        if not need_input_grad:
            return None
        if self._one_input:
            return sum(grads[1:], grads[0])
        return grads

    def config(self):
        raise NotImplementedError("Ensemble: an ensemble is not saved as one model; save each "
                                  "member with save_model and load them together with "
                                  "fastconv.load_ensemble(paths)")

    def summary(self, input_shape=None):
        raise NotImplementedError("Ensemble.summary: summarize each member "
                                  "(ensemble[i].summary(input_shape))")

    def extra_repr(self):
        return f"{len(self.members)} members, head={self.head}"

    def __repr__(self):
        lines = [f"Ensemble({self.extra_repr()})"]
        for i, m in enumerate(self.members):
            lines.append(f"  ({i + 1}): " + repr(m).replace("\n", "\n  "))
        return "\n".join(lines)
