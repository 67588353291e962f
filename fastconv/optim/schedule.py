"""Switch optimizers between epochs: the homework's "SGD, then L-BFGS after epoch k".

The trainer asks ``schedule.optimizer_for_epoch(epoch)`` at the start of every epoch and
calls ``step(closure)`` on the answer. Epochs count from 1, as the homework's logs do.
"""
from ._base import as_scalar, check_count
from ._registry import OptimizerSpec, register_optimizer

_FIRST = "first."
_SECOND = "second."


@register_optimizer("switch")
class SwitchSchedule:
    """Use ``first`` for epochs ``1..switch_after_epoch``, then an optimizer from ``second_factory``.

    Parameters
    ----------
    first : optimizer
        Used up to and including epoch ``switch_after_epoch`` (e.g. :class:`~fastconv.optim.SGD`).
    second_factory : callable
        ``second_factory() -> optimizer``, called once, at the first epoch after the switch
        (or when loading a checkpoint taken after it). It should build the optimizer on the
        same ``params`` vector, e.g. ``lambda: LBFGS(params, lr=1e-3, max_iter=2)``. Building
        it late means its state starts at the switch, as when the homework restarted
        training with ``-optimization LBFGS`` from the SGD model.
    switch_after_epoch : int
        Last epoch of ``first`` (>= 0; 0 uses the second optimizer from epoch 1).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.optim import SGD, LBFGS, SwitchSchedule
    >>> params = np.zeros(3)
    >>> schedule = SwitchSchedule(SGD(params), lambda: LBFGS(params), switch_after_epoch=5)
    >>> type(schedule.optimizer_for_epoch(5)).__name__, type(schedule.optimizer_for_epoch(6)).__name__
    ('SGD', 'LBFGS')
    """

    #: Built by name: ``spec("switch", first=spec("sgd", ...), second=spec("lbfgs", ...),
    #: after_epoch=k)``.
    spec_only_options = ("first", "second", "after_epoch")

    @classmethod
    def from_options(cls, params, context, first, second, after_epoch):
        """Build for a training run from two optimizer specs; the second is built at the
        switch."""
        for name, value in (("first", first), ("second", second)):
            if not isinstance(value, OptimizerSpec):
                raise TypeError(f"switch: {name} must be an optim.spec(...); got "
                                f"{type(value).__name__}")
        return cls(first.build(params, context), lambda: second.build(params, context),
                   after_epoch)

    def __init__(self, first, second_factory, switch_after_epoch):
        if not callable(second_factory):
            raise TypeError("SwitchSchedule: second_factory must be callable; "
                            f"got {type(second_factory).__name__}")
        self.first = first
        self.second_factory = second_factory
        self.switch_after_epoch = check_count("SwitchSchedule", "switch_after_epoch",
                                              switch_after_epoch, low=0)
        self.second = None

    def _second(self):
        if self.second is None:
            self.second = self.second_factory()
        return self.second

    def optimizer_for_epoch(self, epoch):
        """Return the optimizer to use during ``epoch`` (counted from 1)."""
        epoch = check_count("SwitchSchedule", "epoch", epoch, low=1)
        if epoch <= self.switch_after_epoch:
            return self.first
        return self._second()

    def state_dict(self):
        """Flat dict: the switch epoch, then both optimizers' entries prefixed
        ``first.``/``second.`` (the second only once it exists)."""
        d = {"optimizer": "SwitchSchedule", "switch_after_epoch": self.switch_after_epoch}
        d.update({_FIRST + k: v for k, v in self.first.state_dict().items()})
        if self.second is not None:
            d.update({_SECOND + k: v for k, v in self.second.state_dict().items()})
        return d

    def load_state_dict(self, d):
        """Restore both optimizers; builds the second one if the checkpoint has it."""
        if as_scalar(d.get("optimizer", ""), str) != "SwitchSchedule":
            raise ValueError("SwitchSchedule.load_state_dict: not a SwitchSchedule state")
        self.switch_after_epoch = as_scalar(d["switch_after_epoch"], int)
        self.first.load_state_dict({k[len(_FIRST):]: v for k, v in d.items()
                                    if k.startswith(_FIRST)})
        second = {k[len(_SECOND):]: v for k, v in d.items() if k.startswith(_SECOND)}
        if second:
            self._second().load_state_dict(second)
        else:
            self.second = None
