"""Training loop: mini-batches, per-epoch evaluation, callbacks, checkpoints and resume.

A :class:`Trainer` composes an optimizer spec, an optional learning-rate schedule and
callbacks. Each epoch reshuffles the training samples, makes one optimizer step per mini-batch
(the batch gradient is the mean over the batch), evaluates a validation split and the test set
if given, then runs the callbacks: by default it prints a confusion matrix, rewrites
``train.log``/``val.log``/``test.log`` (one row per finished epoch) and writes, atomically, a
checkpoint from which an interrupted run resumes to the same final weights as an
uninterrupted one.
"""
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from contextlib import nullcontext

import numpy as np

from . import optim
from ._errors import PathError
from .callbacks import Checkpoint, CSVLogger, PrintProgress
from ._threads import set_num_threads
from .datasets import Dataset
from .metrics import ConfusionMatrix
from .nn.loss import make_loss
from .optim import OPTIMIZERS, build_optimizer
from .serialization import (ModelFileError, _entry_problem, _parse_json_entry, atomic_savez,
                            read_npz, remove_stale_temporaries, save_model)

__all__ = ["Trainer", "TrainingDiverged", "EpochStats", "build_optimizer", "OPTIMIZERS",
           "predict", "CheckpointError", "SettingsMismatch", "SaveFolderError",
           "check_save_folder", "data_fingerprint", "stratified_split", "upgrade_settings",
           "homework_trainer", "check_schedule_fits"]

# Samples per forward/backward pass inside one mini-batch; larger batches are chunked, unless
# the model depends on the batch (BatchNorm: chunks would change its statistics).
CHUNK = 500

class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised before the offending update is applied."""

    def __init__(self, epoch, step, loss):
        super().__init__(f"training diverged at epoch {epoch}, step {step}: loss is {loss}; "
                         f"the update was not applied (try a smaller learning rate)")
        self.epoch, self.step, self.loss = epoch, step, loss


class CheckpointError(ModelFileError):
    """``checkpoint.npz`` is unreadable or does not follow the schema; nothing was trained.

    Start over with ``fit(..., resume=False)`` (``fastconv train --no-resume``) or train
    into another folder.
    """


class SettingsMismatch(ValueError):
    """The save folder's checkpoint was made with other settings than this Trainer's.

    Resuming would silently mix the two runs (the optimizer state carries the old learning
    rate, the logs the old loss), so it is refused before anything trains.

    Attributes
    ----------
    path : str
        The checkpoint.
    differences : list of (str, object, object)
        ``(setting, value in the checkpoint, value now)`` for each differing setting.
    """

    def __init__(self, path, differences):
        self.path = os.fspath(path)
        self.differences = list(differences)
        listed = "; ".join(f"{name}: {_show(old)} in the checkpoint, {_show(new)} now"
                           for name, old, new in self.differences)
        super().__init__(f"{self.path} was made with other settings ({listed}); start over "
                         f"with resume=False or use another save_dir")


class SaveFolderError(PathError):
    """The save folder cannot be created or written; raised before any work is done
    (``path``, ``problem``)."""

    what = "save folder "


_ABSENT = "(absent)"


def _show(value):
    return value if value is _ABSENT else repr(value)


#: Files a Trainer writes atomically into its save folder.
SAVED_FILES = ("model.npz", "checkpoint.npz", "train.log", "val.log", "test.log",
               "best_model.npz")


def check_save_folder(path):
    """Create ``path`` if needed and check that files can be written into it.

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    SaveFolderError
        ``path`` is an existing file, or the folder cannot be created or written.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SaveFolderError(path, "exists and is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise SaveFolderError(path, f"cannot be written ({exc.strerror or exc})") from None


class EpochStats(dict):
    """Numbers of one pass, readable as attributes.

    A training epoch has ``epoch``, ``loss``, ``accuracy``, ``mean_class_accuracy``,
    ``seconds``, ``seconds_per_sample`` and ``confusion`` (a ConfusionMatrix); :meth:`Trainer.
    fit` adds the evaluation's as ``test_loss``, ``test_accuracy``, ``test_mean_class_
    accuracy``, ``test_confusion`` and ``test_seconds``. :meth:`Trainer.evaluate` returns
    ``loss``, ``accuracy``, ``mean_class_accuracy`` and ``confusion``.
    """

    __getattr__ = dict.__getitem__


def _predict_labels(output):
    return np.argmax(output, axis=1)


def predict(model, x, batch_size=250):
    """Predicted class of each row of ``x``: the arg-max of ``model``'s output, computed in
    evaluation mode, batch by batch (the model's mode is restored afterwards)."""
    training = model.training
    model.eval()
    out = []
    try:
        for lo in range(0, x.shape[0], batch_size):
            out.append(_predict_labels(model.forward(x[lo:lo + batch_size])))
    finally:
        model.train(training)
    return np.concatenate(out) if out else np.empty(0, dtype=np.intp)


def _lr_of(opt):
    """The learning rate of the optimizer's last update, or None (CG has none)."""
    lr = getattr(opt, "current_lr", None)
    lr = lr() if callable(lr) else getattr(opt, "lr", None)
    return None if lr is None else float(lr)


def _momentum_of(opt):
    """The momentum a one-cycle schedule cycles: Adam's beta1 or SGD's momentum."""
    if hasattr(opt, "beta1"):
        return float(opt.beta1)
    return float(opt.momentum) if hasattr(opt, "momentum") else None


def _set_momentum(opt, value):
    if hasattr(opt, "beta1"):
        opt.beta1 = value
    elif hasattr(opt, "momentum"):
        opt.momentum = value


def check_schedule_fits(optimizer, schedule):
    """Refuse, before any work, a schedule the optimizer cannot follow: one for an optimizer
    without a learning rate (CG), one-cycle's momentum cycling for one without momentum.

    Parameters
    ----------
    optimizer : OptimizerSpec
    schedule : schedule or None

    Raises
    ------
    ValueError
        Naming the optimizer, the schedule and the fix.
    """
    if schedule is None:
        return
    import copy

    probe = optimizer.build(np.zeros(1), optim.BuildContext())
    first = probe.first if isinstance(probe, optim.SwitchSchedule) else probe
    if not hasattr(first, "lr"):
        raise ValueError(f"optimizer {optimizer.name!r} has no learning rate for the "
                         f"{schedule.settings()['name']!r} schedule to set; drop the "
                         f"schedule or choose another optimizer")
    try:
        copy.deepcopy(schedule).bind(first.lr, 1, _momentum_of(first))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer {optimizer.name!r} cannot follow this schedule: "
                         f"{exc}") from None


def _validation_count(validation, n):
    """Samples to hold out: ``validation`` is a fraction in (0, 1) or a count."""
    if isinstance(validation, bool):
        raise TypeError("Trainer.fit: validation must be a fraction, a count or (val_x, val_y)")
    if isinstance(validation, (float, np.floating)):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"Trainer.fit: a validation fraction must be in (0, 1); got "
                             f"{validation}")
        count = int(round(validation * n))
    elif isinstance(validation, (int, np.integer)):
        count = int(validation)
    else:
        raise TypeError(f"Trainer.fit: validation must be a fraction, a count or (val_x, "
                        f"val_y); got {type(validation).__name__}")
    if not 1 <= count < n:
        raise ValueError(f"Trainer.fit: validation holds out {count} of {n} training samples; "
                         f"it must leave at least one on each side")
    return count


def stratified_split(y, count, rng):
    """Rows of a training set and of ``count`` validation samples held out of it, with each
    class's share as in ``y`` (largest remainders decide the rounding).

    Parameters
    ----------
    y : ndarray
        Integer labels (N,).
    count : int
        Validation samples, 1 <= count < N.
    rng : numpy.random.Generator

    Returns
    -------
    train_rows, val_rows : ndarray
        Sorted row indices, disjoint, together all of ``range(N)``.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (count / y.size)
    take = np.floor(exact).astype(np.int64)
    # Stable order: ties in the remainder go to the smaller class label.
    extra = np.argsort(-(exact - take), kind="stable")[:count - int(take.sum())]
    take[extra] += 1
    val = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
           for c, k in zip(classes, take)]
    val_rows = np.sort(np.concatenate(val)) if val else np.empty(0, np.intp)
    mask = np.ones(y.size, dtype=bool)
    mask[val_rows] = False
    return np.flatnonzero(mask), val_rows


def upgrade_settings(settings):
    """A checkpoint's settings in today's form.

    Checkpoints written before optimizers and schedules were specs recorded the homework
    driver's options flat (``optimizer: "sgd"``, ``lr``, ``momentum``, ..., ``lr_schedule``);
    they are translated, so that such a run resumes.
    """
    settings = dict(settings)
    if not isinstance(settings.get("optimizer"), str):
        return settings
    keys = ("lr", "lr_decay", "weight_decay", "momentum", "t0_epochs", "max_iter",
            "switch_to_lbfgs_after", "lbfgs_mode", "lbfgs_batch_size", "lbfgs_max_iter")
    old = {k: settings.pop(k) for k in keys if k in settings}
    settings["optimizer"] = optim.homework_optimizer(settings["optimizer"], **old).settings()
    schedule, epochs = settings.pop("lr_schedule", None), settings.pop("schedule_epochs", None)
    settings["schedule"] = (optim.build_schedule("cosine", epochs=epochs).settings()
                            if schedule == "cosine" else None)
    settings.setdefault("label_smoothing", 0.0)
    settings.setdefault("callbacks", {})
    settings.setdefault("validation", None)
    return settings


def _optimizer_through(settings, epoch):
    """The settings of the optimizer that ran up to ``epoch`` (a switch's first, before it)."""
    if isinstance(settings, dict) and settings.get("name") == "switch" \
            and epoch <= settings.get("after_epoch", -1):
        return settings["first"]
    return settings


class Trainer:
    """Train a model on arrays or a Dataset, with an optimizer, a schedule and callbacks.

    Each part brings its own options: the optimizer is a spec (a registered name and its
    options, :func:`fastconv.optim.spec`), the schedule a schedule object or name
    (:mod:`fastconv.optim.lr_schedules`), the loss a name or criterion. The Trainer only
    knows how to run epochs; resume, the settings a resume must match and the saved model's
    metadata come from the parts.

    Parameters
    ----------
    model : fastconv.nn.Module
        Ends in the head that ``loss`` expects (see :func:`fastconv.nn.build_model`).
    loss : str or criterion
        ``"nll"``, ``"mse"``, ``"margin"``, or a criterion from
        :func:`fastconv.nn.make_loss` (e.g. with ``label_smoothing``).
    optimizer : str, OptimizerSpec or dict
        ``"sgd"`` (default options), ``optim.spec("adam", lr=1e-3)``,
        ``optim.homework_optimizer(...)`` (the homework driver's options, including its
        SGD-then-L-BFGS switch), or a spec's ``settings()``.
    schedule : schedule, str, dict or None
        A learning-rate schedule (``optim.lr_schedules.OneCycleLR(max_lr=0.05, epochs=20)``),
        or a name or ``{"name": ..., **options}`` resolved by
        :func:`fastconv.optim.build_schedule`. It sets the optimizer's ``lr`` (and, for
        one-cycle, its momentum) before every update; ``"plateau"`` follows the validation
        loss (the training loss without validation).
    batch_size : int
        1 is pure stochastic descent; larger batches average the gradient over the batch.
        An optimizer spec's own ``batch_size`` overrides it for the epochs that optimizer
        runs.
    callbacks : sequence of Callback
        E.g. :class:`fastconv.callbacks.BestModel`, :class:`~fastconv.callbacks.
        EarlyStopping`; run after every epoch in this order, before the log and checkpoint
        writers the Trainer adds itself.
    seed : int
        Fixes the data order, the validation split and every random layer (the model's
        generator is reseeded).
    threads : int or "auto", optional
        Threads for the kernels (:func:`fastconv.set_num_threads`); None keeps the setting
        (by default ``"auto"``: the cores other processes leave free). Results are the same
        bits for any thread count.
    save_dir : str, optional
        Folder for ``train.log``, ``val.log``, ``test.log``, ``model.npz`` and
        ``checkpoint.npz``.
    progress : bool, optional
        tqdm bars; None shows them only when stderr is a terminal.
    metadata : dict, optional
        Stored in every saved model (e.g. the data normalization).
    verbose : bool
        Print per-epoch summaries and confusion matrices.
    """

    def __init__(self, model, loss="nll", optimizer="sgd", *, schedule=None, batch_size=1,
                 callbacks=(), seed=1, threads=None, save_dir=None, progress=None,
                 metadata=None, verbose=True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"Trainer: batch_size must be an integer >= 1; got {batch_size!r}")
        self.model = model
        self.criterion = make_loss(loss) if isinstance(loss, str) else loss
        self.loss_name = self.criterion.name
        self.optimizer_spec = optim.as_spec(optimizer)
        self.schedule = optim.as_schedule(schedule)
        check_schedule_fits(self.optimizer_spec, self.schedule)
        self.batch_size = int(batch_size)
        self.callbacks = list(callbacks)
        names = [c.name for c in self.callbacks if getattr(c, "name", None)]
        if len(names) != len(set(names)):
            raise ValueError(f"Trainer: two callbacks share a state name ({names}); give each "
                             f"a distinct .name")
        self.seed = int(seed)
        self.threads = threads
        self.save_dir = save_dir
        self.progress = progress
        self.metadata = dict(metadata or {})
        self.verbose = verbose
        self.params, self.grads = model.flat_parameters()
        self.data_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        model.set_rng(np.random.default_rng(np.random.SeedSequence([self.seed, 1])))
        self.epoch = 0
        self.step_count = 0
        self.history = []
        self.stop_training = False
        self.optimizer = None     # the optimizer of the current epoch
        self._stepper = None      # that optimizer, or a SwitchSchedule holding it
        self._n_train = None
        self._data = None         # [train_x, train_y, fingerprint or None] of the last fit
        self._validation = None   # settings of the last fit's validation split
        self._train_index = None  # the training samples' rows of train_x (None: all)
        self._n_outputs = None    # the model's class scores per sample (_n_classes)
        self.order = None

    # -- optimizer and schedule -------------------------------------------------------------
    def _make_stepper(self, n_train=None):
        """Build the optimizer (and bind the schedule) for ``n_train`` training samples
        (default: those of the last fit)."""
        n_train = n_train or self._n_train or 1
        context = optim.BuildContext(n_train=n_train, batch_size=self.batch_size)
        stepper = self.optimizer_spec.build(self.params, context)
        if self.schedule is not None:
            first = (stepper.first if isinstance(stepper, optim.SwitchSchedule) else stepper)
            if not hasattr(first, "lr"):
                raise ValueError(f"Trainer: optimizer {self.optimizer_spec.name!r} has no "
                                 f"learning rate for the schedule to set")
            steps = -(-n_train // self._batch_size_of(first))
            self.schedule.bind(first.lr, steps, _momentum_of(first))
        return stepper

    def _batch_size_of(self, opt):
        return getattr(opt, "batch_size", None) or self.batch_size

    def _apply_schedule(self, opt):
        """Set the optimizer's learning rate (and momentum) for the next update."""
        sched = self.schedule
        if sched is None or not hasattr(opt, "lr"):
            return
        t = self.step_count if sched.interval == "step" else self.epoch
        opt.lr = sched.lr_at(t)
        momentum = sched.momentum_at(t)
        if momentum is not None:
            _set_momentum(opt, momentum)

    def _optimizer_for_epoch(self, epoch):
        if self._stepper is None:
            self._stepper = self._make_stepper()
        if isinstance(self._stepper, optim.SwitchSchedule):
            self.optimizer = self._stepper.optimizer_for_epoch(epoch)
        else:
            self.optimizer = self._stepper
        return self.optimizer

    def _averaged(self):
        swap = getattr(self.optimizer, "swap_in_average", None)
        return swap() if swap is not None else nullcontext()

    # -- one pass -------------------------------------------------------------------------
    def _closure(self, xb, yb, confusion):
        model, crit = self.model, self.criterion
        first = [True]
        n = len(yb)
        chunk_size = n if n > CHUNK and model.depends_on_batch() else CHUNK

        def chunk(lo, hi):
            out = model.forward(xb[lo:hi])
            loss = crit.forward(out, yb[lo:hi])
            if not math.isfinite(loss):
                raise TrainingDiverged(self.epoch + 1, self.step_count + 1, loss)
            if first[0]:
                confusion.add(_predict_labels(out), yb[lo:hi])
            grad_out = crit.backward()
            if n > chunk_size:
                # The loss is a mean over the chunk; weight it into the mean over the batch.
                grad_out = grad_out * grad_out.dtype.type((hi - lo) / n)
            model.backward(grad_out, need_input_grad=False)
            return loss

        def closure():
            model.zero_grad()
            if n <= chunk_size:
                loss = chunk(0, n)
            else:
                # Large batches (L-BFGS on thousands of samples) in chunks: the activations of
                # a whole 4,000-sample batch of the ConvNet would take gigabytes. Parameter
                # gradients accumulate across the chunks' backward passes.
                loss = sum(chunk(lo, min(lo + chunk_size, n)) * (min(lo + chunk_size, n) - lo)
                           for lo in range(0, n, chunk_size)) / n
            first[0] = False
            return loss, self.grads
        return closure

    def _bar(self, total, desc):
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, unit="sample", leave=False, mininterval=0.5)

    def train_epoch(self, x, y):
        """One pass over the training samples of ``(x, y)`` (all of them, or those a
        validation split left) in a fresh random order. Returns EpochStats."""
        epoch = self.epoch + 1
        opt = self._optimizer_for_epoch(epoch)
        batch_size = self._batch_size_of(opt)
        rows = self._train_index
        n = x.shape[0] if rows is None else rows.size
        self.order = self.data_rng.permutation(n)
        if rows is not None:
            self.order = rows[self.order]
        confusion = ConfusionMatrix(self._n_classes(x, y))
        self.model.train()
        bar = self._bar(n, f"epoch {epoch}")
        total_loss, seen = 0.0, 0
        start = time.perf_counter()
        try:
            for lo in range(0, n, batch_size):
                idx = self.order[lo:lo + batch_size]
                xb, yb = x[idx], y[idx]
                self._apply_schedule(opt)
                losses = opt.step(self._closure(xb, yb, confusion))
                self.step_count += 1
                total_loss += float(losses[0]) * len(idx)
                seen += len(idx)
                if bar is not None:
                    bar.update(len(idx))
                    if self.step_count % 200 == 0:
                        bar.set_postfix(loss=f"{total_loss / seen:.4f}",
                                        acc=f"{100 * confusion.accuracy:.2f}%", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        stats = EpochStats(epoch=epoch, loss=total_loss / max(seen, 1),
                           accuracy=confusion.accuracy,
                           mean_class_accuracy=confusion.mean_class_accuracy,
                           seconds=seconds, seconds_per_sample=seconds / max(n, 1),
                           confusion=confusion)
        lr = _lr_of(opt)
        if lr is not None:
            stats["lr"] = lr
        return stats

    def _n_classes(self, x, y):
        """Rows of the confusion matrix: the model's outputs (found once, by a forward pass
        of one sample in evaluation mode, which draws no random number and moves no running
        statistic), or more if the labels say so."""
        if self._n_outputs is None and len(x):
            training = self.model.training
            self.model.eval()
            try:
                out = self.model.forward(x[:1])
            finally:
                self.model.train(training)
            self._n_outputs = int(out.shape[1]) if out.ndim == 2 else 0
        return max(self._n_outputs or 1, int(y.max()) + 1 if len(y) else 1)

    def evaluate(self, x, y, batch_size=250):
        """Loss and accuracy on ``(x, y)`` in evaluation mode (ASGD: averaged weights).

        Batches of 250 keep the cached activations of the homework's ConvNet near 250 MB;
        at 1,000 a training run's peak memory passes 1 GiB.
        """
        confusion = ConfusionMatrix(self._n_classes(x, y))
        self.model.eval()
        total = 0.0
        with self._averaged():
            for lo in range(0, x.shape[0], batch_size):
                xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
                out = self.model.forward(xb)
                total += self.criterion.forward(out, yb) * xb.shape[0]
                confusion.add(_predict_labels(out), yb)
        self.model.train()
        return EpochStats(loss=total / max(x.shape[0], 1), accuracy=confusion.accuracy,
                          mean_class_accuracy=confusion.mean_class_accuracy,
                          confusion=confusion)

    def predict(self, x, batch_size=250):
        """Predicted class of each row of ``x`` (evaluation mode; ASGD: averaged weights)."""
        with self._averaged():
            labels = predict(self.model, x, batch_size)
        self.model.train()
        return labels

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, train_x, train_y=None, test_x=None, test_y=None, epochs=1, resume=True,
            validation=None):
        """Train until ``epochs`` epochs are done in total, resuming from a checkpoint.

        Give the data as a :class:`~fastconv.datasets.Dataset` (what the loaders of
        :mod:`fastconv.datasets` return) or as arrays. A Dataset also gives the saved model
        its input normalization, shape and classes (its ``metadata()``, unless the Trainer's
        ``metadata`` already has them), so that ``fastconv predict`` prepares new images as
        the training data was; a model trained on arrays knows only what ``metadata`` says.

        With ``save_dir`` and ``resume``, a ``checkpoint.npz`` in ``save_dir`` is read and
        checked in full before anything trains, and its settings (model, loss, optimizer,
        schedule, callbacks' options, batch size, seed, validation split, the training data
        itself with its preprocessing) must equal this Trainer's: a run is only continued,
        never silently changed.

        Parameters
        ----------
        train_x : Dataset or ndarray
            The data set, whose training split is trained on and whose test split (if not
            empty) is evaluated after every epoch; or inputs (N, ...) in the model's dtype.
        train_y : ndarray
            Integer labels (N,) of array inputs (None for a Dataset).
        test_x, test_y : ndarray, optional
            Evaluated after every epoch for the record (array inputs only).
        epochs : int
            Total epochs, counting those done before a resume; >= 1.
        resume : bool
            Continue from ``save_dir``'s checkpoint if there is one; False starts over
            (the folder's logs and checkpoint are then replaced).
        validation : float, int or (ndarray, ndarray), optional
            Held out of the training data and evaluated after every epoch (``val_*``
            statistics, ``val.log``): a fraction in (0, 1) or a number of samples, drawn
            stratified by class with the Trainer's seed; or explicit ``(val_x, val_y)``.
            Choose epochs and recipes on it (:class:`~fastconv.callbacks.BestModel`,
            :class:`~fastconv.callbacks.EarlyStopping`), not on the test set.

        Returns
        -------
        list of dict
            Per-epoch statistics, including epochs done before a resume.

        Raises
        ------
        SaveFolderError
            ``save_dir`` cannot be written.
        CheckpointError
            The checkpoint is unreadable or malformed.
        SettingsMismatch
            The checkpoint was made with other settings.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"Trainer.fit: epochs must be an integer >= 1; got {epochs!r}")
        if isinstance(train_x, Dataset):
            if train_y is not None or test_x is not None or test_y is not None:
                raise ValueError("Trainer.fit: give a Dataset alone, or arrays "
                                 "(train_x, train_y[, test_x, test_y]), not both")
            data = train_x
            for key, value in data.metadata().items():
                self.metadata.setdefault(key, value)
            train_x, train_y = data.train_x, data.train_y
            if data.test_x.shape[0]:
                test_x, test_y = data.test_x, data.test_y
        self._check_data(train_x, train_y, "train")
        if test_x is not None:
            self._check_data(test_x, test_y, "test")
        val_x, val_y = self._split(train_x, train_y, validation)
        self._use_data(train_x, train_y)
        if self.save_dir:
            check_save_folder(self.save_dir)
            removed = remove_stale_temporaries(self.save_dir, SAVED_FILES)
            if removed and self.verbose:
                print(f"removed {len(removed)} leftover temporary file(s) of an interrupted "
                      f"write in {self.save_dir}")
        if self.threads is not None:
            set_num_threads(self.threads)
        if self.save_dir and resume:
            self.load_checkpoint()
        callbacks = self._all_callbacks()
        self.stop_training = False
        for cb in callbacks:
            cb.on_fit_begin(self)
        if self.verbose and (self.epoch >= epochs or self.stop_training):
            print(f"nothing to train: {self.save_dir or 'this Trainer'} already holds "
                  f"{self.epoch} epoch(s) of this run" + (
                      " and stopped early" if self.stop_training else
                      " (ask for more epochs to continue it)"))
        while self.epoch < epochs and not self.stop_training:
            stats = self.train_epoch(train_x, train_y)
            for prefix, x, y in (("val_", val_x, val_y), ("test_", test_x, test_y)):
                if x is not None:
                    start = time.perf_counter()
                    result = self.evaluate(x, y)
                    result["seconds"] = time.perf_counter() - start
                    stats.update({prefix + k: v for k, v in result.items()})
            self.epoch = stats.epoch
            observe = getattr(self.schedule, "observe", None)
            if observe is not None:
                observe(stats.get("val_loss", stats.loss))
            self.history.append({k: v for k, v in stats.items() if k != "confusion"
                                 and not k.endswith("confusion")})
            for cb in callbacks:
                cb.on_epoch_end(self, stats)
        for cb in callbacks:
            cb.on_fit_end(self)
        return self.history

    @property
    def validation(self):
        """How the last fit held out validation data (its settings), or None."""
        return self._validation

    def _all_callbacks(self):
        """The user's callbacks, then printing, logs and the checkpoint (last: it saves the
        others' state)."""
        extra = []
        if self.verbose:
            extra.append(PrintProgress())
        if self.save_dir:
            extra += [CSVLogger(self.save_dir), Checkpoint()]
        return self.callbacks + extra

    def _split(self, x, y, validation):
        """Set the training rows and return the validation arrays (or Nones)."""
        self._train_index = None
        self._validation = None
        if validation is None:
            self._n_train = x.shape[0]
            return None, None
        if isinstance(validation, tuple):
            if len(validation) != 2:
                raise ValueError("Trainer.fit: validation=(val_x, val_y) takes two arrays")
            self._check_data(validation[0], validation[1], "validation")
            self._n_train = x.shape[0]
            self._validation = {"arrays": data_fingerprint(*validation)}
            return validation
        count = _validation_count(validation, x.shape[0])
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        train_rows, val_rows = stratified_split(y, count, rng)
        self._train_index = train_rows
        self._n_train = train_rows.size
        self._validation = {"count": count, "stratified": True, "seed": self.seed}
        return x[val_rows], y[val_rows]

    def _check_data(self, x, y, which):
        """Refuse inputs the model cannot take, with the fix, before the first step."""
        dtype = self.params.dtype
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise TypeError(f"Trainer.fit: {which}_x and {which}_y must be numpy arrays; got "
                            f"{type(x).__name__} and {type(y).__name__}")
        if x.dtype != dtype:
            raise TypeError(f"Trainer.fit: {which}_x has dtype {x.dtype} but the model's "
                            f"parameters are {dtype}; convert the data with "
                            f"x.astype(np.{dtype}) (load_mnist(dtype=np.{dtype})) or the "
                            f"model with model.astype(np.{x.dtype})")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise TypeError(f"Trainer.fit: {which}_y must be a 1-D integer array of labels; "
                            f"got shape {y.shape}, dtype {y.dtype}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"Trainer.fit: {which}_x has {x.shape[0]} samples but {which}_y "
                             f"has {y.shape[0]} labels; they must match one to one")

    def _use_data(self, x, y):
        """Remember the training set; :meth:`settings` fingerprints it when first asked (a
        Trainer without ``save_dir`` never pays for it)."""
        if self._data is None or self._data[0] is not x or self._data[1] is not y:
            self._data = [x, y, None]

    def _data_fingerprint(self):
        if self._data is None:
            return None
        if self._data[2] is None:
            self._data[2] = data_fingerprint(self._data[0], self._data[1])
        return self._data[2]

    def settings(self):
        """What a resumed run must share with the run that wrote the checkpoint.

        Returns
        -------
        dict
            The model's architecture; the loss, optimizer, schedule and callbacks, each as
            its own settings; batch size, seed, the validation split, the number of training
            samples and the training data's fingerprint (:func:`data_fingerprint`; these
            three None before :meth:`fit`).
        """
        return {"model": self.model.config(), "loss": self.loss_name,
                "label_smoothing": float(getattr(self.criterion, "label_smoothing", 0.0)),
                "optimizer": self.optimizer_spec.settings(),
                "schedule": self.schedule.settings() if self.schedule is not None else None,
                "callbacks": {c.name: c.settings() for c in self.callbacks
                              if getattr(c, "name", None) and c.settings() is not None},
                "batch_size": self.batch_size, "seed": self.seed,
                "validation": self._validation, "n_train": self._n_train,
                "data": self._data_fingerprint()}

    # -- files -------------------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.save_dir, name)

    def model_metadata(self):
        """The metadata saved with ``model.npz``: the Trainer's plus loss and epoch."""
        return {**self.metadata, "loss": self.loss_name, "epoch": self.epoch}

    def save_checkpoint(self):
        """Write ``model.npz`` and ``checkpoint.npz`` (atomically, in that order)."""
        save_model(self._path("model.npz"), self.model, self.model_metadata())
        opt_state = self._stepper.state_dict() if self._stepper is not None else {}
        arrays = {f"opt/{k}": np.asarray(v) for k, v in opt_state.items()
                  if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)}
        meta = {"epoch": self.epoch, "step": self.step_count, "seed": self.seed,
                "optimizer_scalars": scalars,
                "schedule_state": (self.schedule.state_dict() if self.schedule is not None
                                   else None),
                "callback_states": {c.name: c.state_dict() for c in self.callbacks
                                    if getattr(c, "name", None)
                                    and c.state_dict() is not None},
                "data_rng": self.data_rng.bit_generator.state,
                "model_rng": self._model_rng_state(), "history": self.history,
                "dtype": str(self.params.dtype), "n_params": int(self.params.size),
                "settings": self.settings()}
        arrays.update({f"buffer/{i:03d}": np.asarray(b)
                       for i, b in enumerate(self.model.buffers())})
        atomic_savez(self._path("checkpoint.npz"), params=self.params,
                     order=self.order if self.order is not None else np.empty(0, np.intp),
                     __meta__=np.array(json.dumps(meta, default=_json_default)), **arrays)

    def _model_rng(self):
        """The generator the model's stochastic layers share, or None."""
        for m in self.model.modules():
            if m.stochastic and m.rng is not None:
                return m.rng
        return None

    def _model_rng_state(self):
        rng = self._model_rng()
        return rng.bit_generator.state if rng is not None else None

    def _restorable_state(self):
        """Copies of everything :meth:`load_checkpoint` assigns, for :meth:`_put_back`."""
        return {"params": self.params.copy(), "buffers": [b.copy() for b in
                                                          self.model.buffers()],
                "data_rng": self.data_rng.bit_generator.state,
                "model_rng": self._model_rng_state(),
                "schedule_state": (self.schedule.state_dict() if self.schedule is not None
                                   else None),
                "callback_states": {c.name: c.state_dict() for c in self.callbacks
                                    if getattr(c, "name", None)},
                **{k: getattr(self, k) for k in ("order", "epoch", "step_count", "history",
                                                 "_stepper", "optimizer", "_n_train",
                                                 "_data")}}

    def _put_back(self, before):
        self.params[...] = before.pop("params")
        for current, saved in zip(self.model.buffers(), before.pop("buffers")):
            current[...] = saved
        self.data_rng.bit_generator.state = before.pop("data_rng")
        model_rng, state = self._model_rng(), before.pop("model_rng")
        if model_rng is not None and state is not None:
            model_rng.bit_generator.state = state
        schedule_state = before.pop("schedule_state")
        if schedule_state is not None:
            self.schedule.load_state_dict(schedule_state)
        for cb in self.callbacks:
            state = before["callback_states"].get(getattr(cb, "name", None))
            if state is not None:
                cb.load_state_dict(state)
        before.pop("callback_states")
        for name, value in before.items():
            setattr(self, name, value)

    def load_checkpoint(self, n_train=None, branch=False, data=None):
        """Restore from ``checkpoint.npz`` in ``save_dir`` if present.

        The whole file is checked (schema, settings, optimizer state) before anything is
        restored: on any error the Trainer is left as it was.

        Parameters
        ----------
        n_train : int, optional
            Size of the training set this Trainer will see (:meth:`fit` passes it); part of
            the settings a checkpoint must share.
        branch : bool
            The checkpoint comes from another run that this one branches from (its caller
            compared the two runs' configurations; a checkpoint from before checkpoints
            recorded their settings is then accepted): its L-BFGS
            settings (``switch_to_lbfgs_after``, ``lbfgs_*``) may differ from this Trainer's
            as long as neither run has switched by the checkpoint's epoch, since until then
            both ran the same optimizer (``fastconv.experiments`` uses this).
        data : (ndarray, ndarray), optional
            ``(train_x, train_y)`` this Trainer will train on (:meth:`fit` passes them):
            they must be the checkpoint's, preprocessing included (compared by
            :func:`data_fingerprint`); ``n_train`` is then their length.

        Returns
        -------
        bool
            True if a checkpoint was restored.

        Raises
        ------
        CheckpointError
            The checkpoint is unreadable or malformed.
        SettingsMismatch
            It was made with other settings than this Trainer's.
        """
        path = self._path("checkpoint.npz")
        if not os.path.exists(path):
            return False
        try:
            state = _read_checkpoint(path, read_npz(path, "checkpoint", _is_checkpoint_entry),
                                     settings_required=not branch)
        except ModelFileError as exc:
            raise CheckpointError(exc.path, exc.problem) from None
        meta = state["meta"]
        fingerprint = None
        if data is not None:
            n_train = len(data[0])
            fingerprint = data_fingerprint(*data)
        now = self.settings()
        if n_train is not None:
            now["n_train"] = int(n_train)
        if fingerprint is not None:
            now["data"] = fingerprint
        # A branch's checkpoint from before checkpoints recorded their settings: the caller
        # compared the parent's configuration with this run's (branch_compatible).
        saved = (upgrade_settings(meta["settings"]) if meta["settings"] is not None
                 else dict(now))
        for name in ("n_train", "data"):
            # Called before fit without the data: it cannot be compared yet. A checkpoint
            # from before checkpoints fingerprinted their data cannot be compared either.
            if now[name] is None or name not in saved:
                saved.pop(name, None)
                now.pop(name)
        if branch:
            # Until the epoch it branches at, a run with an L-BFGS switch trains exactly as
            # the run without it: compare the optimizers that ran up to there.
            for settings in (saved, now):
                settings["optimizer"] = _optimizer_through(settings["optimizer"],
                                                           meta["epoch"])
        differences = _differences(saved, now)
        if differences:
            raise SettingsMismatch(path, differences)
        if meta["dtype"] != str(self.params.dtype) or meta["n_params"] != self.params.size:
            raise CheckpointError(path, f"holds {meta['n_params']} {meta['dtype']} parameters; "
                                        f"this model has {self.params.size} "
                                        f"{self.params.dtype}")
        stepper = None
        if meta["optimizer_scalars"] or state["opt"]:
            stepper = self._make_stepper(n_train)
            opt_state = {**meta["optimizer_scalars"], **state["opt"]}
            if (isinstance(stepper, optim.SwitchSchedule)
                    and opt_state.get("optimizer") != "SwitchSchedule"
                    and meta["epoch"] <= stepper.switch_after_epoch):
                # The first optimizer alone, before the switch (a run branching from a plain
                # SGD run): the schedule's first optimizer takes it.
                opt_state = {"optimizer": "SwitchSchedule",
                             "switch_after_epoch": stepper.switch_after_epoch,
                             **{f"first.{k}": v for k, v in opt_state.items()}}
            try:
                stepper.load_state_dict(opt_state)
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(path, f"optimizer state is invalid "
                                            f"({type(exc).__name__}: {exc})") from None
        # Whatever the assignments below could refuse is checked before the first of them,
        # and should one fail all the same the Trainer is put back: it is never half restored.
        model_rng = self._model_rng()
        problem = (_buffers_problem(state["buffers"], self.model)
                   or _generator_problem(meta["data_rng"], self.data_rng, "__meta__.data_rng")
                   or (meta["model_rng"] is not None and model_rng is not None
                       and _generator_problem(meta["model_rng"], model_rng,
                                              "__meta__.model_rng")))
        if problem:
            raise CheckpointError(path, problem)
        before = self._restorable_state()
        try:
            if n_train is not None:
                self._n_train = int(n_train)
            if data is not None:
                self._data = [data[0], data[1], fingerprint]
            self.model.load_buffers(state["buffers"], "buffers")
            self.params[...] = state["params"]
            self.order = state["order"]
            self.epoch, self.step_count = meta["epoch"], meta["step"]
            self.history = meta["history"]
            self.data_rng.bit_generator.state = meta["data_rng"]
            if meta["model_rng"] is not None and model_rng is not None:
                model_rng.bit_generator.state = meta["model_rng"]
            if stepper is not None:
                self._stepper = stepper
                self._optimizer_for_epoch(max(self.epoch, 1))
            if self.schedule is not None and meta.get("schedule_state") is not None:
                self.schedule.load_state_dict(meta["schedule_state"])
            states = meta.get("callback_states") or {}
            for cb in self.callbacks:
                if states.get(getattr(cb, "name", None)) is not None:
                    cb.load_state_dict(states[cb.name])
        except Exception as exc:
            self._put_back(before)
            raise CheckpointError(path, f"cannot be restored ({type(exc).__name__}: {exc}); "
                                        f"the Trainer is left as it was") from None
        if self.verbose:
            print(f"resuming from {path}: {self.epoch} epoch(s) done")
        return True


_HOMEWORK_KEYS = ("lr", "lr_decay", "weight_decay", "momentum", "t0_epochs", "max_iter",
                  "switch_to_lbfgs_after", "lbfgs_mode", "lbfgs_batch_size", "lbfgs_max_iter")


def homework_trainer(model, loss="nll", optimizer="sgd", *, lr_schedule=None,
                     schedule_epochs=None, **options):
    """A :class:`Trainer` configured as the homework's Torch7 driver was, by its options.

    Parameters
    ----------
    model, loss
        As :class:`Trainer`.
    optimizer : {"sgd", "asgd", "cg", "lbfgs"}
    lr_schedule : {None, "cosine"}
        ``"cosine"`` anneals the learning rate to 0 over ``schedule_epochs`` epochs.
    **options
        The driver's optimizer options (``lr``, ``lr_decay``, ``weight_decay``, ``momentum``,
        ``t0_epochs``, ``max_iter``, ``switch_to_lbfgs_after``, ``lbfgs_mode``,
        ``lbfgs_batch_size``, ``lbfgs_max_iter``: see
        :func:`fastconv.optim.homework_optimizer`) and any other :class:`Trainer` option.

    Returns
    -------
    Trainer
    """
    driver = {k: options.pop(k) for k in _HOMEWORK_KEYS if k in options}
    if lr_schedule not in (None, "cosine"):
        raise ValueError(f"homework_trainer: lr_schedule must be None or 'cosine'; got "
                         f"{lr_schedule!r}")
    schedule = None
    if lr_schedule is not None:
        if schedule_epochs is None:
            raise ValueError("homework_trainer: lr_schedule='cosine' needs schedule_epochs")
        schedule = optim.build_schedule("cosine", epochs=schedule_epochs)
    return Trainer(model, loss, optim.homework_optimizer(optimizer, **driver),
                   schedule=schedule, **options)


def data_fingerprint(x, y):
    """A short hash of a training set: inputs and labels, their dtypes and shapes.

    Anything that changes what a network is trained on (the data files, their subset, the
    normalization, local contrast, any other preprocessing) changes it, so a resume compares
    it instead of a list of preprocessing options that a new one could escape.

    Parameters
    ----------
    x, y : ndarray
        Inputs and labels.

    Returns
    -------
    str
        16 hex digits of a SHA-256.
    """
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y, dtype="<i8")
    digest = hashlib.sha256(f"{x.dtype.str} {x.shape} {y.shape}".encode("ascii"))
    for a in (x, y):
        # reshape(-1) of a contiguous array is a view: no copy of a 250 MB training set.
        digest.update(a.reshape(-1).view(np.uint8))
    return digest.hexdigest()[:16]


_HISTORY_KEYS = ("epoch", "loss", "accuracy", "mean_class_accuracy", "seconds")
_META_TYPES = {"epoch": int, "step": int, "seed": int, "optimizer_scalars": dict,
               "data_rng": dict, "history": list, "dtype": str, "n_params": int,
               "settings": dict}


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _generator_problem(state, rng, name):
    """Why ``rng`` cannot take the generator ``state`` (already checked by
    :func:`_check_rng_state`), or None."""
    kind = type(rng.bit_generator).__name__
    if state.get("bit_generator") != kind:
        return (f"{name} is the state of a {state.get('bit_generator')} generator; this "
                f"Trainer's is a {kind}")
    return None


def _buffers_problem(arrays, model):
    """Why the checkpoint's buffer ``arrays`` cannot replace ``model``'s, or None."""
    slots = [f"{type(m).__name__}.{name}" for m in model.modules() for name in m.buffer_names]
    if len(arrays) != len(slots):
        return f"holds {len(arrays)} buffer arrays; the model has {len(slots)}"
    for i, (slot, value, current) in enumerate(zip(slots, arrays, model.buffers())):
        where = f"buffer/{i:03d} ({slot})"
        if value.shape != current.shape:
            return f"{where} has shape {value.shape}; the model needs {current.shape}"
        problem = _entry_problem(where, value)
        if problem:
            return problem
    return None


def _check_rng_state(path, state, name):
    try:
        np.random.Generator(getattr(np.random, state["bit_generator"])()
                            ).bit_generator.state = state
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        raise ModelFileError(path, f"{name} is not a valid generator state") from None


def _is_checkpoint_entry(name):
    """Whether a checkpoint may hold an entry of this name (checked before reading any)."""
    return name in ("__meta__", "params", "order") or name.startswith(("opt/", "buffer/"))


def _read_checkpoint(path, arrays, settings_required=True):
    """Check a checkpoint's arrays and metadata against the schema; return them.

    Unless ``settings_required``, a checkpoint written before checkpoints recorded their
    settings is accepted, with ``meta["settings"]`` None: for a run that branches from
    another, whose caller has compared the two runs' configurations itself."""
    extra = sorted(k for k in arrays if k not in ("__meta__", "params", "order")
                   and not k.startswith(("opt/", "buffer/")))
    missing = sorted({"__meta__", "params", "order"} - set(arrays))
    if missing or extra:
        raise ModelFileError(path, f"entries do not match a checkpoint (missing: "
                                   f"{', '.join(missing) or 'none'}; unexpected: "
                                   f"{', '.join(extra) or 'none'})")
    meta = _parse_json_entry(path, arrays["__meta__"], "__meta__", "checkpoint")
    if "settings" not in meta:
        if settings_required:
            raise ModelFileError(path, "records no settings (written by an older fastconv), "
                                       "so a resume cannot be checked")
        meta["settings"] = None
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if key == "settings" and value is None and not settings_required:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelFileError(path, f"__meta__.{key} must be a {kind.__name__}; got "
                                       f"{type(value).__name__}")
    if meta["epoch"] < 0 or meta["step"] < 0:
        raise ModelFileError(path, "__meta__.epoch and step must be >= 0")
    if "model_rng" not in meta or not isinstance(meta["model_rng"], (dict, type(None))):
        raise ModelFileError(path, "__meta__.model_rng must be an object or null")
    history = meta["history"]
    if len(history) != meta["epoch"]:
        raise ModelFileError(path, f"history has {len(history)} entries for "
                                   f"{meta['epoch']} epochs")
    for i, row in enumerate(history):
        if (not isinstance(row, dict) or row.get("epoch") != i + 1
                or not all(_is_number(row.get(k)) for k in _HISTORY_KEYS)
                or not all(_is_number(v) for k, v in row.items() if k.startswith("test_"))):
            raise ModelFileError(path, f"history entry {i + 1} is malformed (needs numbers "
                                       f"for {', '.join(_HISTORY_KEYS)})")
    _check_rng_state(path, meta["data_rng"], "__meta__.data_rng")
    if meta["model_rng"] is not None:
        _check_rng_state(path, meta["model_rng"], "__meta__.model_rng")
    params = arrays["params"]
    if (params.ndim != 1 or str(params.dtype) != meta["dtype"]
            or params.size != meta["n_params"]):
        raise ModelFileError(path, f"params has shape {params.shape}, dtype {params.dtype}; "
                                   f"__meta__ says {meta['n_params']} {meta['dtype']}")
    if not np.all(np.isfinite(params)):
        raise ModelFileError(path, "params holds NaN or infinite values")
    order = arrays["order"]
    settings = meta["settings"] or {}
    n_train = settings.get("n_train", order.size)
    # With a validation split, the order lists the training rows of the whole array.
    held_out = (settings.get("validation") or {}).get("count", 0)
    if order.ndim != 1 or order.dtype.kind not in "iu" or (
            order.size and (order.size != n_train or order.min() < 0
                            or order.max() >= n_train + held_out
                            or np.unique(order).size != order.size)):
        raise ModelFileError(path, "order is not a permutation of the training samples")
    opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
    buffers = [arrays[k] for k in sorted(arrays) if k.startswith("buffer/")]
    return {"meta": meta, "params": params, "order": order.astype(np.intp), "opt": opt,
            "buffers": buffers}


def _flatten(value, prefix):
    """``{"model.layers[2].dtype": "float64", ...}``: nested settings as dotted paths."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        out = {f"{prefix} length": len(value)}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _differences(saved, now):
    """``(name, saved value, current value)`` for every setting that differs."""
    def plain(v):
        return json.loads(json.dumps(v, default=_json_default))

    saved_flat, now_flat = {}, {}
    for key in saved:
        saved_flat.update(_flatten(plain(saved[key]), key))
    for key in now:
        now_flat.update(_flatten(plain(now[key]), key))
    return [(key, saved_flat.get(key, _ABSENT), now_flat.get(key, _ABSENT))
            for key in sorted(set(saved_flat) | set(now_flat))
            if saved_flat.get(key, _ABSENT) != now_flat.get(key, _ABSENT)]


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
