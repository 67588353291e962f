"""Optimizers by name, with their options: the one registry the Trainer, the CLI and the
experiment runner share.

A Trainer does not take an optimizer's hyperparameters itself. It takes an
:class:`OptimizerSpec` (a registered name and that optimizer's options, checked when the
spec is made), builds the optimizer on the model's parameter vector when training starts, and
stores ``spec.settings()`` in its checkpoints, so that a resume is compared option by option.

Adding an optimizer is one class and one decorator::

    @register_optimizer("mine")
    class Mine(Optimizer):
        def __init__(self, params, lr=1e-3): ...

after which ``Trainer(model, optimizer=spec("mine", lr=0.1))`` and ``fastconv train
--optimizer mine`` work (see ``docs/guide/adding_an_optimizer.rst``).
"""
import inspect
import math

import numpy as np

__all__ = ["OPTIMIZERS", "register_optimizer", "OptimizerSpec", "spec", "as_spec",
           "BuildContext"]

#: Registered optimizer classes by name.
OPTIMIZERS = {}

# Options every spec may carry besides its optimizer's own.
_COMMON = ("batch_size",)


def register_optimizer(name):
    """Class decorator: make an optimizer class buildable by ``name``.

    The class's constructor must take ``params`` first and only keyword options after it; a
    class may add options that depend on the training run through ``spec_options`` (names)
    and a classmethod ``from_options(params, context, **options)`` (see :class:`ASGD`).
    """
    def register(cls):
        key = name.lower()
        if key in OPTIMIZERS and OPTIMIZERS[key] is not cls:
            raise ValueError(f"register_optimizer: {key!r} is already registered to "
                             f"{OPTIMIZERS[key].__name__}")
        OPTIMIZERS[key] = cls
        cls.registry_name = key
        return cls
    return register


class BuildContext:
    """What an optimizer may need to know of the run when it is built.

    Attributes
    ----------
    n_train : int
        Training samples per epoch.
    batch_size : int
        The Trainer's mini-batch size.
    """

    def __init__(self, n_train=1, batch_size=1):
        self.n_train = int(n_train)
        self.batch_size = int(batch_size)


def _option_names(cls):
    if hasattr(cls, "spec_only_options"):
        return tuple(cls.spec_only_options) + _COMMON
    sig = inspect.signature(cls.__init__)
    names = [p.name for p in list(sig.parameters.values())[2:]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return tuple(names) + tuple(getattr(cls, "spec_options", ())) + _COMMON


def _plain(value, where):
    """``value`` as JSON-able data (a spec's options are stored in checkpoints)."""
    if isinstance(value, OptimizerSpec):
        return value.settings()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite; got {value}")
        return value
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v, where) for v in value]
    raise TypeError(f"{where} must be a number, string, bool, list or None; "
                    f"got {type(value).__name__}")


class OptimizerSpec:
    """A registered optimizer's name and options, checked, to be built later.

    Parameters
    ----------
    name : str
        A key of :data:`OPTIMIZERS` (``sgd``, ``asgd``, ``cg``, ``lbfgs``, ``adam``,
        ``adamw``, ``switch``, or one registered by the user).
    **options
        The optimizer's own keyword options (its class's constructor's, plus its
        ``spec_options``), and ``batch_size``: the mini-batch size of the epochs it runs
        (default: the Trainer's).

    Raises
    ------
    ValueError
        Unknown name or option, or an option value the optimizer refuses.
    """

    def __init__(self, name, **options):
        if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
        self.name = name.lower()
        cls = OPTIMIZERS[self.name]
        allowed = _option_names(cls)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"optimizer {self.name!r} has no option {', '.join(unknown)}; "
                             f"its options are {', '.join(allowed)}")
        batch = options.get("batch_size")
        if batch is not None and (isinstance(batch, bool) or not isinstance(
                batch, (int, np.integer)) or batch < 1):
            raise ValueError(f"optimizer {self.name!r}: batch_size must be an integer >= 1; "
                             f"got {batch!r}")
        self.options = {k: v if isinstance(v, OptimizerSpec) else _plain(
            v, f"optimizer {self.name!r}: {k}") for k, v in options.items()}
        # Built once on a one-element vector, so that a bad value is refused now, in the
        # user's words, and not at the first epoch.
        self.build(np.zeros(1), BuildContext())

    @property
    def batch_size(self):
        """The mini-batch size of the epochs this optimizer runs, or None (the Trainer's)."""
        return self.options.get("batch_size")

    def build(self, params, context):
        """The optimizer on ``params`` (the model's flat parameter vector)."""
        cls = OPTIMIZERS[self.name]
        options = {k: v for k, v in self.options.items() if k not in _COMMON}
        make = getattr(cls, "from_options", None)
        opt = make(params, context, **options) if make else cls(params, **options)
        opt.batch_size = self.batch_size
        return opt

    def settings(self):
        """``{"name": ..., **options}`` as plain data (nested specs as their settings)."""
        return {"name": self.name, **{k: _plain(v, k) for k, v in self.options.items()}}

    @classmethod
    def from_settings(cls, settings):
        """The spec whose :meth:`settings` are ``settings``."""
        settings = dict(settings)
        name = settings.pop("name")
        nested = {k: cls.from_settings(v) for k, v in settings.items()
                  if isinstance(v, dict) and "name" in v}
        return cls(name, **{**settings, **nested})

    def __eq__(self, other):
        return isinstance(other, OptimizerSpec) and self.settings() == other.settings()

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"spec({self.name!r}{', ' if opts else ''}{opts})"


def spec(name, **options):
    """An :class:`OptimizerSpec`: ``spec("adam", lr=1e-3)``."""
    return OptimizerSpec(name, **options)


def as_spec(optimizer):
    """An :class:`OptimizerSpec` from a spec, a name (default options) or a settings dict."""
    if isinstance(optimizer, OptimizerSpec):
        return optimizer
    if isinstance(optimizer, str):
        return OptimizerSpec(optimizer)
    if isinstance(optimizer, dict) and "name" in optimizer:
        return OptimizerSpec.from_settings(optimizer)
    raise TypeError(f"optimizer must be a name, an optim.spec(...) or a settings dict with "
                    f"a 'name'; got {type(optimizer).__name__}")


def as_schedule(schedule):
    """A learning-rate schedule from a schedule object, a name (default options), a settings
    dict ``{"name": ..., **options}``, or None."""
    if schedule is None:
        return None
    from .lr_schedules import build_schedule
    if isinstance(schedule, str):
        return build_schedule(schedule)
    if isinstance(schedule, dict) and "name" in schedule:
        options = dict(schedule)
        return build_schedule(options.pop("name"), **options)
    if all(hasattr(schedule, a) for a in ("bind", "lr_at", "settings", "interval")):
        return schedule
    raise TypeError(f"schedule must be a schedule object, a name or a settings dict with a "
                    f"'name'; got {type(schedule).__name__}")
