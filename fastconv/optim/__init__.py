"""Optimizers on one flat parameter vector, after Torch7 ``optim``.

Every optimizer takes ``params`` (a 1-D float32/float64 array, updated in place: it is a
view into the model's contiguous parameter storage) and has ``step(closure) -> list of
losses``, where ``closure() -> (loss, flat_grad)`` evaluates the objective at the current
``params``; ``state_dict()``/``load_state_dict()`` checkpoint them exactly. Listed in order
of increasing complexity:

* :class:`SGD`: learning-rate decay, weight decay, momentum (Torch's dampening), Nesterov.
* :class:`ASGD`: Bottou's averaged SGD; evaluate with :meth:`ASGD.swap_in_average`.
* :class:`CG`: Rasmussen's ``minimize.m`` (Polak-Ribiere, Wolfe-Powell line search).
* :class:`LBFGS`: fixed step (Torch default) or strong-Wolfe line search.
* :class:`SwitchSchedule`: one optimizer up to an epoch, another after it.

Optimizers are registered by name (:data:`OPTIMIZERS`, :func:`register_optimizer`); a
Trainer takes one as :func:`spec` ``(name, **options)``, checked at once and built when
training starts; :func:`build_optimizer` builds one directly and
:func:`homework_optimizer` turns the homework driver's options into a spec.
"""
from .sgd import SGD
from .asgd import ASGD
from .cg import CG
from .lbfgs import LBFGS, cubic_minimizer, strong_wolfe
from .schedule import SwitchSchedule
from ._registry import (OPTIMIZERS, BuildContext, OptimizerSpec, as_schedule, as_spec,
                        register_optimizer, spec)
from ._build import HOMEWORK_OPTIMIZERS, build_optimizer, homework_optimizer

__all__ = ["SGD", "ASGD", "CG", "LBFGS", "SwitchSchedule", "cubic_minimizer", "strong_wolfe",
           "OPTIMIZERS", "HOMEWORK_OPTIMIZERS", "BuildContext", "OptimizerSpec", "as_spec",
           "register_optimizer", "spec", "as_schedule", "build_optimizer",
           "homework_optimizer"]
