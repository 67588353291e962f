"""Optimizers on one flat parameter vector, after Torch7 ``optim``.

Every optimizer takes ``params`` (a 1-D float32/float64 array, updated in place: it is a
view into the model's contiguous parameter storage) and has ``step(closure) -> list of
losses``, where ``closure() -> (loss, flat_grad)`` evaluates the objective at the current
``params``; ``state_dict()``/``load_state_dict()`` checkpoint them exactly. Listed in order
of increasing complexity:

* :class:`SGD`: learning-rate decay, weight decay, momentum (Torch's dampening), Nesterov.
* :class:`ASGD`: Bottou's averaged SGD; evaluate with :meth:`ASGD.swap_in_average`.
* :class:`Adam`, :class:`AdamW`: PyTorch's Adam (L2 or decoupled weight decay, AMSGrad).
* :class:`CG`: Rasmussen's ``minimize.m`` (Polak-Ribiere, Wolfe-Powell line search).
* :class:`LBFGS`: fixed step (Torch default) or strong-Wolfe line search.
* :class:`SwitchSchedule`: one optimizer up to an epoch, another after it.

Optimizers are registered by name (:data:`OPTIMIZERS`, :func:`register_optimizer`); a
Trainer takes one as :func:`spec` ``(name, **options)``, checked at once and built when
training starts; :func:`build_optimizer` builds one directly and
:func:`homework_optimizer` turns the homework driver's options into a spec.

Learning-rate schedules (:mod:`fastconv.optim.lr_schedules`) set ``lr`` (and one-cycle's
``momentum``/``beta1``) between steps; :func:`build_schedule` makes one by its name in
:data:`SCHEDULES`.
"""
from .sgd import SGD
from .asgd import ASGD
from .adam import Adam, AdamW
from .cg import CG
from .lbfgs import LBFGS, cubic_minimizer, strong_wolfe
from .schedule import SwitchSchedule
from .lr_schedules import (SCHEDULES, CosineLR, ExponentialLR, LRSchedule, MultiStepLR,
                           OneCycleLR, ReduceLROnPlateau, StepLR, build_schedule)
from ._registry import (OPTIMIZERS, BuildContext, OptimizerSpec, as_schedule, as_spec,
                        register_optimizer, spec)
from ._build import HOMEWORK_OPTIMIZERS, build_optimizer, homework_optimizer

__all__ = ["SGD", "ASGD", "Adam", "AdamW", "CG", "LBFGS", "SwitchSchedule", "cubic_minimizer",
           "strong_wolfe", "OPTIMIZERS", "HOMEWORK_OPTIMIZERS", "BuildContext", "OptimizerSpec",
           "as_spec", "register_optimizer", "spec", "as_schedule", "build_optimizer",
           "homework_optimizer", "LRSchedule", "StepLR", "MultiStepLR", "ExponentialLR",
           "CosineLR", "OneCycleLR", "ReduceLROnPlateau", "SCHEDULES", "build_schedule"]
