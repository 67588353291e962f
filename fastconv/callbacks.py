"""What happens around a Trainer's epochs: printing, logs, checkpoints, the best model on a
validation metric, early stopping.

A callback is an object with any of ``on_fit_begin(trainer)``, ``on_epoch_end(trainer,
stats)`` and ``on_fit_end(trainer)``. One that keeps state across epochs (a best value, a
patience counter) returns it from ``state_dict()`` as JSON-able data and takes it back in
``load_state_dict()``: the Trainer stores it in its checkpoint, so a resumed run continues as
if it had never stopped. One whose options change what a run does returns them from
``settings()``, which a resume must match.

The Trainer adds :class:`PrintProgress` (``verbose``), :class:`CSVLogger` and
:class:`Checkpoint` (``save_dir``) itself; pass :class:`BestModel` and :class:`EarlyStopping`
(or your own) as ``Trainer(..., callbacks=[...])``.
"""
import math
import os
import sys

from .serialization import atomic_write_text, load_model, save_model

__all__ = ["Callback", "PrintProgress", "CSVLogger", "Checkpoint", "BestModel",
           "EarlyStopping", "LOG_HEADER"]

LOG_HEADER = ["epoch", "loss", "accuracy", "mean_class_accuracy", "seconds"]


class Callback:
    """Base class: every hook does nothing, there is no state and no setting."""

    #: Key of this callback's state in a checkpoint (unique among a Trainer's callbacks).
    name = None

    def on_fit_begin(self, trainer):
        """Called by :meth:`Trainer.fit` before the first epoch (after a resume)."""

    def on_epoch_end(self, trainer, stats):
        """Called after every epoch with its statistics (``trainer.history`` includes it)."""

    def on_fit_end(self, trainer):
        """Called when :meth:`Trainer.fit` returns normally."""

    def settings(self):
        """Options a resumed run must share with the run that wrote the checkpoint, or None."""
        return None

    def state_dict(self):
        """State to keep across a resume (JSON-able), or None."""
        return None

    def load_state_dict(self, state):
        """Take back what :meth:`state_dict` returned (a resumed run)."""


def _threads_text(n):
    return "1 thread" if n == 1 else f"{n} threads"


class PrintProgress(Callback):
    """Per-epoch summaries and confusion matrices on standard output."""

    def on_epoch_end(self, trainer, stats):
        """Print the epoch's speed, losses, accuracies and confusion matrices."""
        from ._threads import get_num_threads
        print(f"epoch {stats.epoch}: {1000 * stats.seconds_per_sample:.3f} ms/sample, "
              f"{stats.seconds:.1f} s, {_threads_text(get_num_threads())}")
        print(f"train: loss {stats.loss:.4f}, accuracy {100 * stats.accuracy:.2f}%, "
              f"mean class accuracy {100 * stats.mean_class_accuracy:.2f}%")
        print(stats.confusion)
        for prefix, title in (("val_", "validation"), ("test_", "test")):
            if prefix + "accuracy" in stats:
                print(f"{title}: loss {stats[prefix + 'loss']:.4f}, accuracy "
                      f"{100 * stats[prefix + 'accuracy']:.2f}%, mean class accuracy "
                      f"{100 * stats[prefix + 'mean_class_accuracy']:.2f}%")
                print(stats[prefix + "confusion"])
        sys.stdout.flush()


def _write_log(path, rows):
    lines = [",".join(LOG_HEADER)]
    for r in rows:
        lines.append(",".join(str(r[k]) for k in LOG_HEADER))
    atomic_write_text(path, "\n".join(lines) + "\n")


class CSVLogger(Callback):
    """``train.log``, ``val.log`` and ``test.log`` in the save folder: one row per finished
    epoch (epoch, loss, accuracy, mean_class_accuracy, seconds), rewritten atomically from the
    Trainer's whole history, so a resumed run's logs hold every epoch once."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def on_epoch_end(self, trainer, stats):
        """Rewrite the logs from the whole history."""
        history = trainer.history
        for log, prefix in (("train.log", ""), ("val.log", "val_"), ("test.log", "test_")):
            if prefix and not any(prefix + "accuracy" in h for h in history):
                continue
            rows = [{"epoch": h["epoch"], **{k: h.get(prefix + k, "") for k in LOG_HEADER[1:]}}
                    for h in history]
            _write_log(os.path.join(self.folder, log), rows)


class Checkpoint(Callback):
    """Write ``model.npz`` and ``checkpoint.npz`` after every epoch (last of the callbacks,
    so that the others' state is in it)."""

    def on_epoch_end(self, trainer, stats):
        """Write the model and the checkpoint."""
        trainer.save_checkpoint()


def _check_mode(cls, mode):
    if mode not in ("min", "max"):
        raise ValueError(f"{cls}: mode must be 'min' or 'max'; got {mode!r}")
    return mode


def _check_monitor(cls, trainer, monitor):
    """Refuse, before the first epoch, a validation metric of a fit without validation."""
    if monitor.startswith("val_") and trainer.validation is None:
        raise ValueError(f"{cls} watches {monitor!r}, but this fit holds out no validation "
                         f"data: pass fit(..., validation=N) or watch a training metric")


def _metric(cls, stats, monitor):
    if monitor not in stats:
        known = ", ".join(k for k in stats if isinstance(stats[k], float))
        raise ValueError(f"{cls}: the epoch has no metric {monitor!r} (it has {known}); "
                         f"fit with validation=... for val_* metrics")
    return float(stats[monitor])


class BestModel(Callback):
    """Keep the model of the epoch with the best value of a metric.

    Parameters
    ----------
    monitor : str
        A key of the epoch's statistics, e.g. ``"val_accuracy"`` (default) or ``"val_loss"``.
        Choose on validation metrics: the test set is for the record.
    mode : {"max", "min"}, optional
        Whether larger is better; default: ``"min"`` for names ending in ``loss``, else
        ``"max"``.
    filename : str
        Written atomically into the Trainer's ``save_dir`` whenever the metric improves.

    Attributes
    ----------
    epoch, value : int, float
        The best epoch so far and its metric (None before the first).
    """

    name = "best_model"

    def __init__(self, monitor="val_accuracy", mode=None, filename="best_model.npz"):
        self.monitor = str(monitor)
        self.mode = _check_mode("BestModel", mode or (
            "min" if self.monitor.endswith("loss") else "max"))
        self.filename = filename
        self.epoch = None
        self.value = None
        self._params = None
        self._buffers = None
        self._folder = None

    def _better(self, value):
        if self.value is None:
            return True
        return value > self.value if self.mode == "max" else value < self.value

    def on_fit_begin(self, trainer):
        """Check the metric exists; remember the save folder (the best model's file)."""
        _check_monitor("BestModel", trainer, self.monitor)
        self._folder = trainer.save_dir

    def on_epoch_end(self, trainer, stats):
        """Keep (and save) the model if the epoch's metric is the best so far."""
        value = _metric("BestModel", stats, self.monitor)
        if math.isnan(value) or not self._better(value):
            return
        self.epoch, self.value = int(stats.epoch), value
        self._params = trainer.params.copy()
        self._buffers = [b.copy() for b in trainer.model.buffers()]
        if trainer.save_dir:
            save_model(os.path.join(trainer.save_dir, self.filename), trainer.model,
                       {**trainer.model_metadata(), "best": {
                           "monitor": self.monitor, "value": value, "epoch": self.epoch}})

    def load_into(self, model):
        """Put the best epoch's parameters and buffers into ``model`` (the Trainer's)."""
        if self.epoch is None:
            raise ValueError("BestModel: no epoch has been evaluated yet")
        if self._params is None:
            if not self._folder:
                raise ValueError("BestModel: the best weights were not kept (no save_dir)")
            best, _ = load_model(os.path.join(self._folder, self.filename))
            params, _ = best.flat_parameters()
            self._params = params.copy()
            self._buffers = [b.copy() for b in best.buffers()]
        target, _ = model.flat_parameters()
        target[...] = self._params
        for current, saved in zip(model.buffers(), self._buffers):
            current[...] = saved
        return model

    def settings(self):
        return {"monitor": self.monitor, "mode": self.mode}

    def state_dict(self):
        return {"epoch": self.epoch, "value": self.value}

    def load_state_dict(self, state):
        """Take back the best epoch and value; the weights are read from the file when
        :meth:`load_into` needs them."""
        self.epoch, self.value = state["epoch"], state["value"]
        self._params = self._buffers = None


class EarlyStopping(Callback):
    """Stop training when a metric has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        Default ``"val_loss"``.
    patience : int
        Epochs without improvement before stopping (>= 1).
    mode : {"min", "max"}, optional
        Default: ``"min"`` for names ending in ``loss``, else ``"max"``.
    min_delta : float
        An improvement must exceed this (>= 0).

    Attributes
    ----------
    stopped_epoch : int or None
        The epoch after which training stopped.
    """

    name = "early_stopping"

    def __init__(self, monitor="val_loss", patience=5, mode=None, min_delta=0.0):
        from ._validation import check_float, check_int
        self.monitor = str(monitor)
        self.patience = check_int("EarlyStopping", "patience", patience, minimum=1)
        self.mode = _check_mode("EarlyStopping", mode or (
            "min" if self.monitor.endswith("loss") else "max"))
        self.min_delta = check_float("EarlyStopping", "min_delta", min_delta, minimum=0.0)
        self.best = None
        self.wait = 0
        self.stopped_epoch = None

    def on_fit_begin(self, trainer):
        """Check the metric exists; a run that stopped early stays stopped when resumed."""
        _check_monitor("EarlyStopping", trainer, self.monitor)
        if self.stopped_epoch is not None:
            trainer.stop_training = True

    def on_epoch_end(self, trainer, stats):
        """Count epochs without improvement; stop the Trainer after ``patience`` of them."""
        value = _metric("EarlyStopping", stats, self.monitor)
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = int(stats.epoch)
            trainer.stop_training = True

    def settings(self):
        return {"monitor": self.monitor, "patience": self.patience, "mode": self.mode,
                "min_delta": self.min_delta}

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        """Take back the best value, the count and the epoch it stopped at."""
        self.best, self.wait = state["best"], int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]

