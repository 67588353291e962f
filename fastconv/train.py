"""Training loop: mini-batches, per-epoch evaluation, logs, checkpoints and resume.

One :class:`Trainer` runs the homework's driver: each epoch reshuffles the training set, makes
one optimizer step per mini-batch (the batch gradient is the mean over the batch), prints a
confusion matrix, rewrites ``train.log`` and ``test.log`` (one row per finished epoch) and
writes, atomically, a checkpoint from which an interrupted run resumes to the same final weights as an
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
from ._threads import get_num_threads, set_num_threads
from .datasets import Dataset
from .metrics import ConfusionMatrix
from .optim._base import check_real
from .nn.loss import make_loss
from .optim import OPTIMIZERS, build_optimizer
from .serialization import (ModelFileError, _entry_problem, _parse_json_entry, atomic_savez,
                            atomic_write_text, read_npz, remove_stale_temporaries, save_model)

__all__ = ["Trainer", "TrainingDiverged", "EpochStats", "build_optimizer", "OPTIMIZERS",
           "predict", "CheckpointError", "SettingsMismatch", "SaveFolderError",
           "check_save_folder", "data_fingerprint"]

LBFGS_MODES = ("torch", "batch")
# Samples per forward/backward pass inside one mini-batch; larger batches are chunked, unless
# the model depends on the batch (BatchNorm: chunks would change its statistics).
CHUNK = 500
LOG_HEADER = ["epoch", "loss", "accuracy", "mean_class_accuracy", "seconds"]


def _threads_text(n):
    return "1 thread" if n == 1 else f"{n} threads"


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
SAVED_FILES = ("model.npz", "checkpoint.npz", "train.log", "test.log")


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


def _write_log(path, rows):
    lines = [",".join(LOG_HEADER)]
    for r in rows:
        lines.append(",".join(str(r[k]) for k in LOG_HEADER))
    atomic_write_text(path, "\n".join(lines) + "\n")


class Trainer:
    """Train a model on arrays with one of the homework's optimizers.

    Parameters
    ----------
    model : fastconv.nn.Module
        Ends in the head that ``loss`` expects (see :func:`fastconv.nn.build_model`).
    loss : {"nll", "mse", "margin"}
    optimizer : {"sgd", "asgd", "cg", "lbfgs"}
    batch_size : int
        1 is pure stochastic descent; larger batches average the gradient over the batch.
    lr, lr_decay, weight_decay, momentum, max_iter
        As the homework's options.
    t0_epochs : float
        The homework's ``t0``: ASGD starts averaging after ``t0_epochs * n_train`` updates,
        as the Torch7 driver's ``t0 = trsize * opt.t0`` does at every batch size (so after
        ``t0_epochs`` epochs at batch 1, ``t0_epochs * batch_size`` epochs at batch B).
        Earlier fastconv counted ``t0_epochs`` epochs' worth of updates
        (``t0_epochs * ceil(n_train / batch_size)``), which agrees with the driver only at
        batch 1; a run resumed from such a checkpoint keeps the t0 it started with.
    switch_to_lbfgs_after : int, optional
        Run the chosen optimizer for this many epochs, then L-BFGS.
    lbfgs_mode : {"torch", "batch"}
        How L-BFGS runs (as the optimizer or after a switch). ``"torch"``: the homework's
        Torch7 L-BFGS, fixed step ``lr``, ``max_iter`` iterations per mini-batch, correction
        pairs kept across mini-batches. ``"batch"``: L-BFGS proper on each mini-batch: fresh
        memory per mini-batch (every pair formed on one objective), strong-Wolfe line search
        from a unit step; meant for mini-batches of thousands of samples
        (``lbfgs_batch_size``).
    lbfgs_batch_size : int, optional
        Mini-batch size of the L-BFGS epochs (default ``batch_size``).
    lbfgs_max_iter : int, optional
        Iterations per mini-batch of L-BFGS (default ``max_iter``).
    lr_schedule : {None, "cosine"}
        ``"cosine"`` multiplies the learning rate by ``(1 + cos(pi * s / S)) / 2`` at update
        ``s`` of ``S = schedule_epochs * updates per epoch``, annealing it to 0 at the end of
        epoch ``schedule_epochs`` (on top of SGD's own ``lr_decay``).
    schedule_epochs : int, optional
        Length of the schedule in epochs (required with ``lr_schedule``).
    seed : int
        Fixes the data order and every random layer (the model's generator is reseeded).
    threads : int or "auto", optional
        Threads for the kernels (:func:`fastconv.set_num_threads`); None keeps the setting
        (by default ``"auto"``: the cores other processes leave free). Results are the same
        bits for any thread count.
    save_dir : str, optional
        Folder for ``train.log``, ``test.log``, ``model.npz`` and ``checkpoint.npz``.
    progress : bool, optional
        tqdm bars; None shows them only when stderr is a terminal.
    metadata : dict, optional
        Stored in every saved model (e.g. the data normalization).
    verbose : bool
        Print per-epoch summaries and confusion matrices.
    """

    def __init__(self, model, loss="nll", optimizer="sgd", *, batch_size=1, lr=1e-3,
                 lr_decay=1e-7, weight_decay=0.0, momentum=0.0, t0_epochs=1, max_iter=2,
                 switch_to_lbfgs_after=None, lbfgs_mode="torch", lbfgs_batch_size=None,
                 lbfgs_max_iter=None, lr_schedule=None, schedule_epochs=None, seed=1,
                 threads=None, save_dir=None, progress=None, metadata=None, verbose=True):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"Trainer: unknown optimizer {optimizer!r}; choose from "
                             f"{list(OPTIMIZERS)}")
        if int(batch_size) < 1:
            raise ValueError(f"Trainer: batch_size must be >= 1; got {batch_size}")
        self.model = model
        self.criterion = make_loss(loss)
        self.loss_name = loss
        self.optimizer_name = optimizer.lower()
        self.batch_size = int(batch_size)
        self.options = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                            momentum=momentum, max_iter=max_iter)
        # Checked here in the user's unit (epochs): ASGD would see t0 in updates, a number
        # the user never typed.
        self.t0_epochs = check_real("Trainer", "t0_epochs", t0_epochs, low=0)
        self.switch_to_lbfgs_after = switch_to_lbfgs_after
        if lbfgs_mode not in LBFGS_MODES:
            raise ValueError(f"Trainer: lbfgs_mode must be one of {list(LBFGS_MODES)}; "
                             f"got {lbfgs_mode!r}")
        self.lbfgs_mode = lbfgs_mode
        self.lbfgs_batch_size = None if lbfgs_batch_size is None else int(lbfgs_batch_size)
        if self.lbfgs_batch_size is not None and self.lbfgs_batch_size < 1:
            raise ValueError(f"Trainer: lbfgs_batch_size must be >= 1; got {lbfgs_batch_size}")
        self.lbfgs_max_iter = lbfgs_max_iter
        if lr_schedule not in (None, "cosine"):
            raise ValueError(f"Trainer: lr_schedule must be None or 'cosine'; got {lr_schedule!r}")
        if lr_schedule is not None and (schedule_epochs is None or int(schedule_epochs) < 1):
            raise ValueError(f"Trainer: lr_schedule={lr_schedule!r} needs schedule_epochs >= 1; "
                             f"got {schedule_epochs!r}")
        self.lr_schedule = lr_schedule
        self.schedule_epochs = None if schedule_epochs is None else int(schedule_epochs)
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
        self.optimizer = None     # the optimizer of the current epoch
        self._stepper = None      # that optimizer, or a SwitchSchedule holding it
        self._n_train = None
        self._data = None         # [train_x, train_y, fingerprint or None] of the last fit
        self.order = None

    # -- optimizer ------------------------------------------------------------------------
    def _steps_per_epoch(self, batch_size=None):
        return -(-(self._n_train or 1) // (batch_size or self.batch_size))

    def _build(self, name):
        if name == "lbfgs":
            max_iter = self.lbfgs_max_iter or self.options["max_iter"]
            if self.lbfgs_mode == "batch":
                return optim.LBFGS(self.params, lr=1.0, max_iter=max_iter,
                                   line_search="strong_wolfe", memory="step")
            return build_optimizer("lbfgs", self.params, **{**self.options,
                                                            "max_iter": max_iter})
        # The driver's trsize * t0: updates, whatever the batch size (not epochs of updates).
        return build_optimizer(name, self.params, t0=self.t0_epochs * (self._n_train or 1),
                               **self.options)

    def _make_stepper(self):
        """The optimizer, or a SwitchSchedule of it and L-BFGS (``switch_to_lbfgs_after``)."""
        first = self._build(self.optimizer_name)
        if self.switch_to_lbfgs_after is None:
            return first
        return optim.SwitchSchedule(first, lambda: self._build("lbfgs"),
                                    self.switch_to_lbfgs_after)

    def _batch_size_of(self, opt):
        if isinstance(opt, optim.LBFGS) and self.lbfgs_batch_size is not None:
            return self.lbfgs_batch_size
        return self.batch_size

    def _scheduled_lr(self, opt, batch_size):
        """Set ``opt.lr`` from the schedule for the next update (no-op without one)."""
        if self.lr_schedule is None or not hasattr(opt, "lr"):
            return
        total = self.schedule_epochs * self._steps_per_epoch(batch_size)
        progress = min(self.step_count / total, 1.0)
        opt.lr = self.options["lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))

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
        """One pass over ``(x, y)`` in a fresh random order. Returns EpochStats."""
        epoch = self.epoch + 1
        opt = self._optimizer_for_epoch(epoch)
        batch_size = self._batch_size_of(opt)
        n = x.shape[0]
        self.order = self.data_rng.permutation(n)
        confusion = ConfusionMatrix(self._n_classes(y))
        self.model.train()
        bar = self._bar(n, f"epoch {epoch}")
        total_loss, seen = 0.0, 0
        start = time.perf_counter()
        try:
            for lo in range(0, n, batch_size):
                idx = self.order[lo:lo + batch_size]
                xb, yb = x[idx], y[idx]
                self._scheduled_lr(opt, batch_size)
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
        return EpochStats(epoch=epoch, loss=total_loss / max(seen, 1),
                          accuracy=confusion.accuracy,
                          mean_class_accuracy=confusion.mean_class_accuracy,
                          seconds=seconds, seconds_per_sample=seconds / max(n, 1),
                          confusion=confusion)

    @staticmethod
    def _n_classes(y):
        return max(10, int(y.max()) + 1) if len(y) else 10

    def evaluate(self, x, y, batch_size=250):
        """Loss and accuracy on ``(x, y)`` in evaluation mode (ASGD: averaged weights).

        Batches of 250 keep the cached activations of the homework's ConvNet near 250 MB;
        at 1,000 a training run's peak memory passes 1 GiB.
        """
        confusion = ConfusionMatrix(self._n_classes(y))
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
    def fit(self, train_x, train_y=None, test_x=None, test_y=None, epochs=1, resume=True):
        """Train until ``epochs`` epochs are done in total, resuming from a checkpoint.

        Give the data as a :class:`~fastconv.datasets.Dataset` (what the loaders of
        :mod:`fastconv.datasets` return) or as arrays. A Dataset also gives the saved model
        its input normalization, shape and classes (its ``metadata()``, unless the Trainer's
        ``metadata`` already has them), so that ``fastconv predict`` prepares new images as
        the training data was; a model trained on arrays knows only what ``metadata`` says.

        With ``save_dir`` and ``resume``, a ``checkpoint.npz`` in ``save_dir`` is read and
        checked in full before anything trains, and its settings (model, loss, optimizer
        and its hyperparameters, batch size, seed, number of training samples, the training
        data itself with its preprocessing) must equal this Trainer's: a run is only
        continued, never silently changed.

        Parameters
        ----------
        train_x : Dataset or ndarray
            The data set, whose training split is trained on and whose test split (if not
            empty) is evaluated after every epoch; or inputs (N, ...) in the model's dtype.
        train_y : ndarray
            Integer labels (N,) of array inputs (None for a Dataset).
        test_x, test_y : ndarray, optional
            Evaluated after every epoch (array inputs only).
        epochs : int
            Total epochs, counting those done before a resume; >= 1.
        resume : bool
            Continue from ``save_dir``'s checkpoint if there is one; False starts over
            (the folder's logs and checkpoint are then replaced).

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
        self._n_train = train_x.shape[0]
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
            if self.epoch >= epochs and self.verbose:
                print(f"nothing to train: {self.save_dir} already holds {self.epoch} "
                      f"epoch(s) of this run (ask for more epochs to continue it)")
        while self.epoch < epochs:
            stats = self.train_epoch(train_x, train_y)
            if test_x is not None:
                start = time.perf_counter()
                test = self.evaluate(test_x, test_y)
                test["seconds"] = time.perf_counter() - start
                stats.update({f"test_{k}": v for k, v in test.items()})
            self.epoch = stats.epoch
            self.history.append({k: v for k, v in stats.items() if k != "confusion"
                                 and not k.endswith("confusion")})
            self._report(stats)
            if self.save_dir:
                self._write_logs()
                self.save_checkpoint()
        return self.history

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
            The model's architecture, loss, optimizer and its hyperparameters, batch size,
            seed, number of training samples and the training data's fingerprint
            (:func:`data_fingerprint`; both None before :meth:`fit`).
        """
        return {"model": self.model.config(), "loss": self.loss_name,
                "optimizer": self.optimizer_name, "batch_size": self.batch_size,
                **{k: v for k, v in self.options.items()}, "t0_epochs": self.t0_epochs,
                "switch_to_lbfgs_after": self.switch_to_lbfgs_after,
                "lbfgs_mode": self.lbfgs_mode, "lbfgs_batch_size": self.lbfgs_batch_size,
                "lbfgs_max_iter": self.lbfgs_max_iter, "lr_schedule": self.lr_schedule,
                "schedule_epochs": self.schedule_epochs, "seed": self.seed,
                "n_train": self._n_train,
                "data": self._data_fingerprint()}

    def _report(self, stats):
        if not self.verbose:
            return
        print(f"epoch {stats.epoch}: {1000 * stats.seconds_per_sample:.3f} ms/sample, "
              f"{stats.seconds:.1f} s, {_threads_text(get_num_threads())}")
        print(f"train: loss {stats.loss:.4f}, accuracy {100 * stats.accuracy:.2f}%, "
              f"mean class accuracy {100 * stats.mean_class_accuracy:.2f}%")
        print(stats.confusion)
        if "test_accuracy" in stats:
            print(f"test: loss {stats.test_loss:.4f}, accuracy "
                  f"{100 * stats.test_accuracy:.2f}%, mean class accuracy "
                  f"{100 * stats.test_mean_class_accuracy:.2f}%")
            print(stats.test_confusion)
        sys.stdout.flush()

    # -- files -------------------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.save_dir, name)

    def _write_logs(self):
        train_rows = [{"epoch": h["epoch"], "loss": h["loss"], "accuracy": h["accuracy"],
                       "mean_class_accuracy": h["mean_class_accuracy"],
                       "seconds": h["seconds"]} for h in self.history]
        _write_log(self._path("train.log"), train_rows)
        if any("test_accuracy" in h for h in self.history):
            test_rows = [{"epoch": h["epoch"], "loss": h.get("test_loss", ""),
                          "accuracy": h.get("test_accuracy", ""),
                          "mean_class_accuracy": h.get("test_mean_class_accuracy", ""),
                          "seconds": h.get("test_seconds", "")} for h in self.history]
            _write_log(self._path("test.log"), test_rows)

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
        saved = dict(meta["settings"]) if meta["settings"] is not None else dict(now)
        for name in ("n_train", "data"):
            # Called before fit without the data: it cannot be compared yet. A checkpoint
            # from before checkpoints fingerprinted their data cannot be compared either.
            if now[name] is None or name not in saved:
                saved.pop(name, None)
                now.pop(name)
        differences = _differences(saved, now)
        if branch:
            differences = [d for d in differences if not _branch_safe(d, meta["epoch"])]
        if differences:
            raise SettingsMismatch(path, differences)
        if meta["dtype"] != str(self.params.dtype) or meta["n_params"] != self.params.size:
            raise CheckpointError(path, f"holds {meta['n_params']} {meta['dtype']} parameters; "
                                        f"this model has {self.params.size} "
                                        f"{self.params.dtype}")
        stepper = None
        if meta["optimizer_scalars"] or state["opt"]:
            stepper = self._make_stepper()
            opt_state = {**meta["optimizer_scalars"], **state["opt"]}
            if (isinstance(stepper, optim.SwitchSchedule)
                    and opt_state.get("optimizer") != "SwitchSchedule"
                    and meta["epoch"] <= self.switch_to_lbfgs_after):
                # The first optimizer alone, before the switch (a run branching from a plain
                # SGD run): the schedule's first optimizer takes it.
                opt_state = {"optimizer": "SwitchSchedule",
                             "switch_after_epoch": self.switch_to_lbfgs_after,
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
        except Exception as exc:
            self._put_back(before)
            raise CheckpointError(path, f"cannot be restored ({type(exc).__name__}: {exc}); "
                                        f"the Trainer is left as it was") from None
        if self.verbose:
            print(f"resuming from {path}: {self.epoch} epoch(s) done")
        return True


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
    n_train = (meta["settings"] or {}).get("n_train", order.size)
    if order.ndim != 1 or order.dtype.kind not in "iu" or (
            order.size and (order.size != n_train
                            or not np.array_equal(np.sort(order), np.arange(order.size)))):
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


_BRANCH_SETTINGS = ("switch_to_lbfgs_after", "lbfgs_mode", "lbfgs_batch_size",
                    "lbfgs_max_iter")


def _branch_safe(difference, epoch):
    """A setting difference that cannot have acted by ``epoch`` (see ``branch``)."""
    name, saved, now = difference
    if name not in _BRANCH_SETTINGS:
        return False
    if name == "switch_to_lbfgs_after":
        return all(v in (None, _ABSENT) or v >= epoch for v in (saved, now))
    return True


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
