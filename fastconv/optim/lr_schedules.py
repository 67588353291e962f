"""Learning-rate schedules with PyTorch's defaults and meanings, as functions of the step.

A schedule owns no optimizer. The trainer drives every schedule the same way::

    schedule = build_schedule("onecycle", max_lr=0.1, epochs=10)
    schedule.bind(base_lr=optimizer.lr, steps_per_epoch=len(batches), base_momentum=beta1)
    # before interval t (t = 0, 1, ... counted in schedule.interval: "epoch" or "step"):
    optimizer.lr = schedule.lr_at(t)
    if schedule.momentum_at(t) is not None:
        optimizer.beta1 = schedule.momentum_at(t)       # or SGD's momentum
    # ReduceLROnPlateau only, once at the end of every epoch:
    schedule.observe(validation_metric)

``interval`` says what ``t`` counts and when the learning rate changes: ``"epoch"``
(:class:`StepLR`, :class:`MultiStepLR`, :class:`ExponentialLR`, :class:`ReduceLROnPlateau`,
which PyTorch users step once per epoch) or ``"step"`` (:class:`CosineLR`,
:class:`OneCycleLR`, stepped after every update). Lengths (``step_size``, ``milestones``,
``total``, ``total_steps``, ``warmup``) are counted in that interval; the step schedules also
take them in epochs (``epochs=``, ``warmup_epochs=``), turned into steps by :meth:`bind`.

``lr_at(t)`` is a closed form of ``t`` (no hidden counter), so resuming needs only the
settings; ReduceLROnPlateau is the one schedule with state (``best``, ``num_bad_epochs``,
``cooldown_counter``, current ``lr``), and ``lr_at`` returns its current learning rate.

Departures from PyTorch, each on purpose:

* PyTorch's StepLR, MultiStepLR, ExponentialLR, LinearLR and CosineAnnealingLR are
  "chainable": each step multiplies the previous learning rate. The closed forms here round
  differently, by a few units in the last place of a double (well below float32's).
* :class:`CosineLR` is PyTorch's ``SequentialLR([LinearLR(warmup_start_factor, 1.0,
  warmup), CosineAnnealingLR(total - warmup, eta_min)], milestones=[warmup])`` and equals it
  for ``t <= total``; after ``total`` it stays at ``eta_min``, where CosineAnnealingLR would
  rise again along the cosine. ``warmup_start_factor`` may be 0 (LinearLR needs > 0 only
  because of its recursive form).
* :class:`OneCycleLR` raises past ``total_steps`` as PyTorch does, but a phase of zero
  length (``pct_start * total_steps == 1``) gives its end value instead of dividing by 0.
"""
import bisect
import inspect
import math

import numpy as np

from ._base import as_scalar, check_count, check_real

__all__ = ["LRSchedule", "StepLR", "MultiStepLR", "ExponentialLR", "CosineLR", "OneCycleLR",
           "ReduceLROnPlateau", "SCHEDULES", "build_schedule"]


def _check_choice(cls_name, name, value, choices):
    if value not in choices:
        raise ValueError(f"{cls_name}: {name} must be one of {list(choices)}; got {value!r}")
    return value


def _check_bool(cls_name, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls_name}: {name} must be a bool; got {type(value).__name__}")
    return bool(value)


def _plain(value):
    """A state-dict or settings value as plain Python data (0-d arrays from ``np.load``
    become scalars, 1-d arrays lists) so saved and current settings compare equal."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class LRSchedule:
    """Base class: the options, :meth:`bind`, and the state-dictionary bookkeeping.

    Subclasses set ``name`` (their key in :data:`SCHEDULES`), ``interval`` and
    ``_options`` (the constructor's option names, in order), and implement ``_lr(t)``.
    """

    name = None
    interval = "epoch"
    _options = ()

    def __init__(self):
        self.base_lr = None
        self.steps_per_epoch = None
        # Not ``base_momentum``: that is a OneCycleLR option with PyTorch's meaning.
        self.optimizer_momentum = None

    @property
    def bound(self):
        """True once :meth:`bind` has been called."""
        return self.base_lr is not None

    def bind(self, base_lr, steps_per_epoch, base_momentum=None):
        """Attach the schedule to a run; call once before training.

        Parameters
        ----------
        base_lr : float
            The optimizer's configured learning rate (>= 0): what StepLR, MultiStepLR,
            ExponentialLR, CosineLR and ReduceLROnPlateau scale (OneCycleLR uses ``max_lr``).
        steps_per_epoch : int
            Updates per epoch (>= 1); turns lengths given in epochs into steps.
        base_momentum : float or None
            The optimizer's momentum or ``beta1``; None when it has neither, which
            OneCycleLR with ``cycle_momentum`` refuses.

        Returns
        -------
        self
        """
        cls = type(self).__name__
        base_lr = check_real(cls, "base_lr", base_lr, low=0.0)
        steps_per_epoch = check_count(cls, "steps_per_epoch", steps_per_epoch, low=1)
        if base_momentum is not None:
            base_momentum = check_real(cls, "base_momentum", base_momentum, low=0.0)
        self._resolve(steps_per_epoch, base_momentum)
        self.base_lr, self.steps_per_epoch = base_lr, steps_per_epoch
        self.optimizer_momentum = base_momentum
        self._reset()
        return self

    def _resolve(self, steps_per_epoch, base_momentum):
        """Turn lengths in epochs into steps and check what needs the run (subclasses)."""

    def _reset(self):
        """Start the schedule's state afresh at bind time (stateful subclasses)."""

    def _check_t(self, t):
        cls = type(self).__name__
        if not self.bound:
            raise RuntimeError(f"{cls}: call bind(base_lr, steps_per_epoch) before asking "
                               f"for learning rates")
        return check_count(cls, "t", t, low=0)

    def lr_at(self, t):
        """The learning rate for the interval after ``t`` completed intervals (t = 0 first)."""
        return self._lr(self._check_t(t))

    def momentum_at(self, t):
        """The momentum (or ``beta1``) for interval ``t``, or None when the schedule leaves
        it alone (every schedule except OneCycleLR with ``cycle_momentum``)."""
        self._check_t(t)
        return None

    def settings(self):
        """The options as a JSON-able dict ``{"name": ..., **options}``: what the trainer
        records and compares to refuse a resume under different settings."""
        return {"name": self.name, **{k: _plain(getattr(self, k)) for k in self._options}}

    def _binding(self):
        """The values of :meth:`bind` that the learning rates depend on: a resume with other
        values would continue another schedule. ``steps_per_epoch`` matters only where a
        length is given in epochs and turned into steps."""
        d = {"base_lr": self.base_lr}
        if self.interval == "step" and (getattr(self, "epochs", None) is not None
                                        or getattr(self, "warmup_epochs", None) is not None):
            d["steps_per_epoch"] = self.steps_per_epoch
        return d

    def _state(self):
        return {}

    def _load_state(self, d):
        pass

    def state_dict(self):
        """Flat dict of plain data: ``schedule`` (the name), the options that are set (lists
        as int arrays, so ``np.savez`` stores them), what the learning rates take from the
        binding (``base_lr``, and ``steps_per_epoch`` when a length is in epochs), and the
        state of stateful schedules."""
        d = {"schedule": self.name}
        for k, v in self.settings().items():
            if k != "name" and v is not None:
                d[k] = np.asarray(v, dtype=np.int64) if isinstance(v, list) else v
        if self.bound:
            d.update(self._binding())
        d.update(self._state())
        return d

    def load_state_dict(self, d):
        """Restore the state saved by :meth:`state_dict` into a schedule built with the same
        settings and already bound; raise ValueError when any setting differs."""
        cls = type(self).__name__
        name = as_scalar(d["schedule"], str) if "schedule" in d else None
        if name != self.name:
            raise ValueError(f"{cls}.load_state_dict: state belongs to schedule {name!r}, "
                             f"not {self.name!r}")
        if not self.bound:
            raise RuntimeError(f"{cls}.load_state_dict: call bind(...) first (the state "
                               f"overrides what bind starts)")
        saved = {k: _plain(d.get(k)) for k in self._options}
        binding = self._binding()
        saved.update({k: _plain(d[k]) for k in binding if k in d})
        now = {**self.settings(), **binding}
        for k, v in saved.items():
            if v != now[k]:
                raise ValueError(f"{cls}.load_state_dict: state was saved with {k}={v!r}; "
                                 f"this schedule has {k}={now[k]!r}")
        self._load_state(d)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "name")
        return f"{type(self).__name__}({opts})"


# --------------------------------------------------------------------------- per epoch

class StepLR(LRSchedule):
    """Decay by ``gamma`` every ``step_size`` epochs: ``lr = base_lr * gamma ** (t // step_size)``.

    Parameters
    ----------
    step_size : int
        Epochs between decays, >= 1.
    gamma : float, default 0.1
        Multiplicative factor, > 0.
    """

    name = "step"
    _options = ("step_size", "gamma")

    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = check_count("StepLR", "step_size", step_size, low=1)
        self.gamma = check_real("StepLR", "gamma", gamma, low=0.0, low_open=True)

    def _lr(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRSchedule):
    """Decay by ``gamma`` at each milestone epoch:
    ``lr = base_lr * gamma ** (number of milestones <= t)``.

    Parameters
    ----------
    milestones : sequence of int
        Epochs (>= 0) at which the decay applies; a repeated milestone decays once per
        occurrence, as PyTorch's ``Counter`` does. Stored sorted.
    gamma : float, default 0.1
        Multiplicative factor, > 0.
    """

    name = "multistep"
    _options = ("milestones", "gamma")

    def __init__(self, milestones, gamma=0.1):
        super().__init__()
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"MultiStepLR: milestones must be a sequence of ints; "
                            f"got {type(milestones).__name__}")
        self.milestones = sorted(check_count("MultiStepLR", "milestones[]", m, low=0)
                                 for m in milestones)
        self.gamma = check_real("MultiStepLR", "gamma", gamma, low=0.0, low_open=True)

    def _lr(self, t):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class ExponentialLR(LRSchedule):
    """Decay by ``gamma`` every epoch: ``lr = base_lr * gamma ** t``.

    Parameters
    ----------
    gamma : float
        Multiplicative factor, > 0.
    """

    name = "exponential"
    _options = ("gamma",)

    def __init__(self, gamma):
        super().__init__()
        self.gamma = check_real("ExponentialLR", "gamma", gamma, low=0.0, low_open=True)

    def _lr(self, t):
        return self.base_lr * self.gamma ** t


class ReduceLROnPlateau(LRSchedule):
    """Multiply the learning rate by ``factor`` when a metric stops improving (PyTorch's).

    Call :meth:`observe` once at the end of every epoch with the validation metric; an epoch
    is bad when the metric does not beat ``best`` by the threshold; after more than
    ``patience`` bad epochs in a row, ``lr = max(lr * factor, min_lr)`` (skipped when that
    changes it by ``eps`` or less), and then ``cooldown`` epochs are not counted. A NaN
    metric is a bad epoch.

    Parameters
    ----------
    mode : {"min", "max"}, default "min"
        Whether a lower or a higher metric is better.
    factor : float, default 0.1
        Factor of each reduction, in [0, 1).
    patience : int, default 10
        Bad epochs tolerated before a reduction, >= 0.
    threshold : float, default 1e-4
        Least improvement that counts, >= 0.
    threshold_mode : {"rel", "abs"}, default "rel"
        "rel": better means below ``best * (1 - threshold)`` ("min") or above
        ``best * (1 + threshold)`` ("max"); "abs": beyond ``best -/+ threshold``.
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted, >= 0.
    min_lr : float, default 0
        Lower bound of the learning rate, >= 0.
    eps : float, default 1e-8
        Smallest change of the learning rate worth making, >= 0.

    Attributes
    ----------
    lr : float or None
        The current learning rate (``base_lr`` at bind).
    best : float
        Best metric so far (+inf or -inf before the first).
    num_bad_epochs, cooldown_counter, last_epoch : int
        PyTorch's counters; ``last_epoch`` counts observed epochs.
    """

    name = "plateau"
    _options = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
                "min_lr", "eps")

    def __init__(self, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        super().__init__()
        cls = "ReduceLROnPlateau"
        self.mode = _check_choice(cls, "mode", mode, ("min", "max"))
        self.factor = check_real(cls, "factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = check_count(cls, "patience", patience, low=0)
        self.threshold = check_real(cls, "threshold", threshold, low=0.0)
        self.threshold_mode = _check_choice(cls, "threshold_mode", threshold_mode,
                                            ("rel", "abs"))
        self.cooldown = check_count(cls, "cooldown", cooldown, low=0)
        self.min_lr = check_real(cls, "min_lr", min_lr, low=0.0)
        self.eps = check_real(cls, "eps", eps, low=0.0)
        self.lr = None
        self._reset_counters()

    def _reset_counters(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _reset(self):
        self._reset_counters()
        self.lr = self.base_lr

    def _is_better(self, a):
        # PyTorch's comparisons verbatim, including "rel" scaling a negative best.
        if self.threshold_mode == "rel":
            if self.mode == "min":
                return a < self.best * (1.0 - self.threshold)
            return a > self.best * (self.threshold + 1.0)
        if self.mode == "min":
            return a < self.best - self.threshold
        return a > self.best + self.threshold

    def observe(self, metric):
        """Record the metric of the epoch that just ended and reduce ``lr`` if due.

        Returns
        -------
        float
            The learning rate for the next epoch.
        """
        if not self.bound:
            raise RuntimeError("ReduceLROnPlateau: call bind(base_lr, steps_per_epoch) "
                               "before observe")
        try:
            if isinstance(metric, (bool, np.bool_)):
                raise TypeError
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau: metric must be a real number; "
                            f"got {type(metric).__name__} {metric!r}") from None
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def _lr(self, t):
        return self.lr

    def _state(self):
        if not self.bound:
            return {}
        return {"lr": self.lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_epoch": self.last_epoch}

    def _load_state(self, d):
        self.lr = as_scalar(d["lr"])
        self.best = as_scalar(d["best"])
        self.num_bad_epochs = as_scalar(d["num_bad_epochs"], int)
        self.cooldown_counter = as_scalar(d["cooldown_counter"], int)
        self.last_epoch = as_scalar(d["last_epoch"], int)


# --------------------------------------------------------------------------- per step

def _length(cls, steps_name, steps, epochs_name, epochs):
    """Check that a length is given either in steps or in epochs; return the checked pair."""
    if steps is not None and epochs is not None:
        raise ValueError(f"{cls}: give {steps_name} (in steps) or {epochs_name}, not both; "
                         f"got {steps_name}={steps!r}, {epochs_name}={epochs!r}")
    if steps is None and epochs is None:
        raise ValueError(f"{cls}: give {steps_name} (in steps) or {epochs_name}; got neither")
    if steps is not None:
        return check_count(cls, steps_name, steps, low=1), None
    return None, check_count(cls, epochs_name, epochs, low=1)


class CosineLR(LRSchedule):
    """Linear warmup, then cosine annealing to ``eta_min``, both per step::

        t <  warmup:          lr = base_lr * (f + (1 - f) * t / warmup)    f = warmup_start_factor
        warmup <= t <= total: lr = eta_min + (base_lr - eta_min) * (1 + cos(pi s / S)) / 2
                                   with s = t - warmup, S = total - warmup
        t >  total:           lr = eta_min

    ``total`` counts the whole schedule, warmup included, so that the learning rate reaches
    ``eta_min`` when training ends (``epochs=`` the number of training epochs).

    Parameters
    ----------
    total : int, optional
        Length of the schedule in steps, >= 1; exactly one of ``total`` and ``epochs``.
    warmup : int, default 0
        Warmup length in steps, >= 0 and <= the total.
    warmup_start_factor : float, default 1/3
        Fraction of ``base_lr`` the warmup starts from, in [0, 1] (LinearLR's
        ``start_factor``, whose default this is).
    eta_min : float, default 0
        Final learning rate, >= 0.
    epochs : int, optional
        Length of the schedule in epochs, >= 1, turned into steps by :meth:`bind`.
    warmup_epochs : int, optional
        Warmup length in epochs, >= 0; not together with a nonzero ``warmup``.

    Attributes
    ----------
    total_steps, warmup_steps : int or None
        The lengths in steps, once known (at construction when given in steps, else at bind).
    """

    name = "cosine"
    interval = "step"
    _options = ("total", "warmup", "warmup_start_factor", "eta_min", "epochs",
                "warmup_epochs")

    def __init__(self, total=None, warmup=0, warmup_start_factor=1 / 3, eta_min=0.0,
                 epochs=None, warmup_epochs=None):
        super().__init__()
        cls = "CosineLR"
        self.total, self.epochs = _length(cls, "total", total, "epochs", epochs)
        self.warmup = check_count(cls, "warmup", warmup, low=0)
        self.warmup_epochs = None
        if warmup_epochs is not None:
            self.warmup_epochs = check_count(cls, "warmup_epochs", warmup_epochs, low=0)
            if self.warmup:
                raise ValueError(f"CosineLR: give warmup (in steps) or warmup_epochs, not "
                                 f"both; got warmup={warmup!r}, "
                                 f"warmup_epochs={warmup_epochs!r}")
        self.warmup_start_factor = check_real(cls, "warmup_start_factor",
                                              warmup_start_factor, low=0.0, high=1.0)
        self.eta_min = check_real(cls, "eta_min", eta_min, low=0.0)
        self.total_steps = self.warmup_steps = None
        if self.total is not None and self.warmup_epochs is None:
            self._set_lengths(self.total, self.warmup)

    def _set_lengths(self, total, warmup):
        if warmup > total:
            raise ValueError(f"CosineLR: warmup must not exceed the total length; got "
                             f"warmup {warmup} steps > total {total} steps")
        self.total_steps, self.warmup_steps = total, warmup

    def _resolve(self, steps_per_epoch, base_momentum):
        total = self.total if self.total is not None else self.epochs * steps_per_epoch
        warmup = (self.warmup if self.warmup_epochs is None
                  else self.warmup_epochs * steps_per_epoch)
        self._set_lengths(total, warmup)

    def _lr(self, t):
        if t < self.warmup_steps:
            f = self.warmup_start_factor
            return self.base_lr * (f + (1.0 - f) * t / self.warmup_steps)
        if t >= self.total_steps:
            return self.eta_min
        s, n = t - self.warmup_steps, self.total_steps - self.warmup_steps
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * s / n)) / 2


class OneCycleLR(LRSchedule):
    """Smith's one-cycle policy, per step, as PyTorch's ``OneCycleLR`` computes it.

    Two phases (default): over the first ``pct_start`` of the steps the learning rate rises
    from ``max_lr / div_factor`` to ``max_lr`` while the momentum falls from
    ``max_momentum`` to ``base_momentum``; then the learning rate falls to
    ``max_lr / div_factor / final_div_factor`` while the momentum rises back. With
    ``three_phase`` the rise is mirrored back to ``max_lr / div_factor`` before the final
    fall. Phase ends sit at steps ``pct_start * total_steps - 1`` (and
    ``2 * pct_start * total_steps - 2``) and ``total_steps - 1``; within a phase the
    fraction ``pct`` anneals by ``cos`` (``end + (start - end) (1 + cos(pi pct)) / 2``) or
    ``linear``.

    Parameters
    ----------
    max_lr : float
        Peak learning rate, > 0 (the optimizer's own lr is not used).
    total_steps : int, optional
        Length in steps, >= 1; exactly one of ``total_steps`` and ``epochs``.
    epochs : int, optional
        Length in epochs, >= 1, turned into steps by :meth:`bind`.
    pct_start : float, default 0.3
        Fraction of the steps spent rising, in [0, 1].
    anneal_strategy : {"cos", "linear"}, default "cos"
    div_factor : float, default 25
        ``max_lr / div_factor`` is the starting learning rate, > 0.
    final_div_factor : float, default 1e4
        The final learning rate is the starting one divided by this, > 0.
    three_phase : bool, default False
    cycle_momentum : bool, default True
        Cycle the momentum (``beta1`` for Adam) inversely to the learning rate;
        :meth:`momentum_at` returns None when False.
    base_momentum, max_momentum : float, default 0.85, 0.95
        Momentum bounds, each in [0, 1).

    Attributes
    ----------
    n_steps : int or None
        The length in steps, once known (at construction from ``total_steps``, else at bind).
    initial_lr, min_lr : float
        ``max_lr / div_factor`` and ``initial_lr / final_div_factor``.

    Notes
    -----
    ``lr_at(t)`` raises past ``t = total_steps`` as PyTorch's ``step`` does: a schedule
    shorter than the training is a configuration error, not something to extrapolate.
    """

    name = "onecycle"
    interval = "step"
    _options = ("max_lr", "total_steps", "epochs", "pct_start", "anneal_strategy",
                "div_factor", "final_div_factor", "three_phase", "cycle_momentum",
                "base_momentum", "max_momentum")

    def __init__(self, max_lr, total_steps=None, epochs=None, pct_start=0.3,
                 anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4,
                 three_phase=False, cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95):
        super().__init__()
        cls = "OneCycleLR"
        self.max_lr = check_real(cls, "max_lr", max_lr, low=0.0, low_open=True)
        self.total_steps, self.epochs = _length(cls, "total_steps", total_steps, "epochs",
                                                epochs)
        self.pct_start = check_real(cls, "pct_start", pct_start, low=0.0, high=1.0)
        self.anneal_strategy = _check_choice(cls, "anneal_strategy", anneal_strategy,
                                             ("cos", "linear"))
        self.div_factor = check_real(cls, "div_factor", div_factor, low=0.0, low_open=True)
        self.final_div_factor = check_real(cls, "final_div_factor", final_div_factor,
                                           low=0.0, low_open=True)
        self.three_phase = _check_bool(cls, "three_phase", three_phase)
        self.cycle_momentum = _check_bool(cls, "cycle_momentum", cycle_momentum)
        self.base_momentum = check_real(cls, "base_momentum", base_momentum, low=0.0,
                                        high=1.0, high_open=True)
        self.max_momentum = check_real(cls, "max_momentum", max_momentum, low=0.0,
                                       high=1.0, high_open=True)
        self.n_steps = self.total_steps
        self.initial_lr = self.max_lr / self.div_factor
        self.min_lr = self.initial_lr / self.final_div_factor

    def bind(self, base_lr, steps_per_epoch, base_momentum=None):
        """See :meth:`LRSchedule.bind`; ``base_lr`` is not used (``max_lr`` sets the
        scale), and ``base_momentum=None`` is refused when ``cycle_momentum`` is on."""
        return super().bind(base_lr, steps_per_epoch, base_momentum)

    def _binding(self):
        d = super()._binding()
        del d["base_lr"]     # max_lr sets the scale, so the optimizer's lr may change
        return d

    def _resolve(self, steps_per_epoch, base_momentum):
        if self.cycle_momentum and base_momentum is None:
            raise ValueError("OneCycleLR: cycle_momentum=True needs an optimizer with "
                             "momentum or beta1; bind got base_momentum=None (pass "
                             "cycle_momentum=False)")
        self.n_steps = (self.total_steps if self.total_steps is not None
                        else self.epochs * steps_per_epoch)

    def _phases(self):
        # (end_step, start_lr, end_lr, start_momentum, end_momentum), PyTorch's table.
        n, p = self.n_steps, self.pct_start
        lo, hi, fin = self.initial_lr, self.max_lr, self.min_lr
        m_lo, m_hi = self.base_momentum, self.max_momentum
        if self.three_phase:
            return ((float(p * n) - 1, lo, hi, m_hi, m_lo),
                    (float(2 * p * n) - 2, hi, lo, m_lo, m_hi),
                    (n - 1, lo, fin, m_hi, m_hi))
        return ((float(p * n) - 1, lo, hi, m_hi, m_lo),
                (n - 1, hi, fin, m_lo, m_hi))

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, t):
        if t > self.n_steps:
            raise ValueError(f"OneCycleLR: t={t} is past the schedule's {self.n_steps} steps")
        phases = self._phases()
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                span = end_step - start_step
                pct = (t - start_step) / span if span != 0 else 1.0
                return self._anneal(lr0, lr1, pct), self._anneal(m0, m1, pct)
            start_step = end_step

    def _lr(self, t):
        return self._at(t)[0]

    def momentum_at(self, t):
        t = self._check_t(t)
        return self._at(t)[1] if self.cycle_momentum else None


# --------------------------------------------------------------------------- registry

SCHEDULES = {cls.name: cls for cls in (StepLR, MultiStepLR, ExponentialLR, CosineLR,
                                       OneCycleLR, ReduceLROnPlateau)}


def build_schedule(name, **options):
    """Construct a schedule by its name in :data:`SCHEDULES` from its options.

    Raises
    ------
    ValueError
        For an unknown name, an unknown option or a missing required option (one line,
        naming what is accepted); the constructor's own checks raise as usual.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {list(SCHEDULES)}")
    cls = SCHEDULES[name]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"schedule {name!r}: unknown option {unknown[0]!r}; "
                         f"expected some of {list(params)}")
    missing = [k for k, p in params.items()
               if p.default is inspect.Parameter.empty and k not in options]
    if missing:
        raise ValueError(f"schedule {name!r}: missing required option {missing[0]!r}")
    return cls(**options)
