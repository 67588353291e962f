"""The homework's optimizers by name: the one registry the trainer and the CLI share."""
from .asgd import ASGD
from .cg import CG
from .lbfgs import LBFGS
from .sgd import SGD

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = ("sgd", "asgd", "cg", "lbfgs")


def build_optimizer(name, params, *, lr=1e-3, lr_decay=1e-7, weight_decay=0.0, momentum=0.0,
                    t0=1e6, max_iter=2, n_correction=10):
    """Construct an optimizer by its homework name (``sgd``, ``asgd``, ``cg``, ``lbfgs``).

    ``lr`` is SGD's and L-BFGS's learning rate and ASGD's eta0, as in the homework's driver;
    ``t0`` is ASGD's averaging start in updates; ``max_iter`` is CG's and L-BFGS's iterations
    per mini-batch.
    """
    name = name.lower()
    if name == "sgd":
        return SGD(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                   momentum=momentum)
    if name == "asgd":
        return ASGD(params, lr=lr, t0=t0)
    if name == "cg":
        return CG(params, max_iter=max_iter)
    if name == "lbfgs":
        return LBFGS(params, lr=lr, max_iter=max_iter, n_correction=n_correction)
    raise ValueError(f"unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}")
