"""Optimizers by name: :func:`build_optimizer`, and :func:`homework_optimizer`, the
homework driver's options (``-optimization``, ``-learningRate``, ``-t0``, ...) as one spec."""
from ._registry import OPTIMIZERS, BuildContext, OptimizerSpec

__all__ = ["OPTIMIZERS", "HOMEWORK_OPTIMIZERS", "build_optimizer", "homework_optimizer"]

#: The homework's four optimizers (the Torch7 driver's ``-optimization`` choices).
HOMEWORK_OPTIMIZERS = ("sgd", "asgd", "cg", "lbfgs")


def build_optimizer(name, params, *, n_train=1, **options):
    """Construct a registered optimizer by name on ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`OPTIMIZERS`.
    params : numpy.ndarray
        The flat parameter vector.
    n_train : int
        Training samples per epoch (ASGD's ``t0_epochs`` counts in them).
    **options
        The optimizer's options (see :class:`OptimizerSpec`).
    """
    return OptimizerSpec(name, **options).build(params, BuildContext(n_train=n_train))


def homework_optimizer(optimizer="sgd", *, lr=1e-3, lr_decay=1e-7, weight_decay=0.0,
                       momentum=0.0, t0_epochs=1, max_iter=2, switch_to_lbfgs_after=None,
                       lbfgs_mode="torch", lbfgs_batch_size=None, lbfgs_max_iter=None):
    """The spec of the homework driver's optimizer options.

    ``lr`` is SGD's and L-BFGS's learning rate and ASGD's eta0; ``t0_epochs`` starts ASGD's
    averaging after ``t0_epochs * n_train`` updates (the driver's ``t0 = trsize * t0``);
    ``max_iter`` is CG's and L-BFGS's iterations per mini-batch. ``switch_to_lbfgs_after=k``
    runs the optimizer for ``k`` epochs, then L-BFGS in ``lbfgs_mode`` (``"torch"``: fixed
    step ``lr``; ``"batch"``: line search, fresh memory per mini-batch of
    ``lbfgs_batch_size``) with ``lbfgs_max_iter`` (default ``max_iter``) iterations.

    Returns
    -------
    OptimizerSpec
    """
    def lbfgs():
        options = {"mode": lbfgs_mode, "max_iter": lbfgs_max_iter or max_iter}
        if lbfgs_mode != "batch":
            options.update(lr=lr, n_correction=10)
        if lbfgs_batch_size is not None:
            options["batch_size"] = lbfgs_batch_size
        return OptimizerSpec("lbfgs", **options)

    name = optimizer.lower()
    if name == "sgd":
        first = OptimizerSpec("sgd", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                              momentum=momentum)
    elif name == "asgd":
        first = OptimizerSpec("asgd", lr=lr, t0_epochs=t0_epochs)
    elif name == "cg":
        first = OptimizerSpec("cg", max_iter=max_iter)
    elif name == "lbfgs":
        first = lbfgs()
    else:
        raise ValueError(f"unknown homework optimizer {optimizer!r}; choose from "
                         f"{list(HOMEWORK_OPTIMIZERS)}")
    if switch_to_lbfgs_after is None:
        return first
    return OptimizerSpec("switch", first=first, second=lbfgs(),
                         after_epoch=switch_to_lbfgs_after)
