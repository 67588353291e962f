"""Training loop: mini-batches, per-epoch evaluation, logs, checkpoints and resume.

One :class:`Trainer` runs the homework's driver: each epoch reshuffles the training set, makes
one optimizer step per mini-batch (the batch gradient is the mean over the batch), prints a
confusion matrix, rewrites ``train.log`` and ``test.log`` (one row per finished epoch) and
writes, atomically, a checkpoint from which an interrupted run resumes to the same final weights as an
uninterrupted one.
"""
import json
import math
import os
import sys
import time
from contextlib import nullcontext

import numpy as np

from . import optim
from ._threads import get_num_threads, set_num_threads
from .metrics import ConfusionMatrix
from .nn.loss import make_loss
from .optim import OPTIMIZERS, build_optimizer
from .serialization import atomic_savez, atomic_write_text, save_model

__all__ = ["Trainer", "TrainingDiverged", "EpochStats", "build_optimizer", "OPTIMIZERS",
           "predict"]

LOG_HEADER = ["epoch", "loss", "accuracy", "mean_class_accuracy", "seconds"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised before the offending update is applied."""

    def __init__(self, epoch, step, loss):
        super().__init__(f"training diverged at epoch {epoch}, step {step}: loss is {loss}; "
                         f"the update was not applied (try a smaller learning rate)")
        self.epoch, self.step, self.loss = epoch, step, loss


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
    lr, lr_decay, weight_decay, momentum, t0_epochs, max_iter
        As the homework's options (``t0_epochs`` is ASGD's t0 in epochs).
    switch_to_lbfgs_after : int, optional
        Run the chosen optimizer for this many epochs, then L-BFGS.
    seed : int
        Fixes the data order and every random layer (the model's generator is reseeded).
    threads : int, optional
        Threads for the kernels (:func:`fastconv.set_num_threads`); None keeps the setting.
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
                 switch_to_lbfgs_after=None, seed=1, threads=None, save_dir=None,
                 progress=None, metadata=None, verbose=True):
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
        self.t0_epochs = t0_epochs
        self.switch_to_lbfgs_after = switch_to_lbfgs_after
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
        self.order = None

    # -- optimizer ------------------------------------------------------------------------
    def _make_stepper(self):
        """The optimizer, or a SwitchSchedule of it and L-BFGS (``switch_to_lbfgs_after``)."""
        steps_per_epoch = -(-(self._n_train or 1) // self.batch_size)
        first = build_optimizer(self.optimizer_name, self.params,
                                t0=self.t0_epochs * steps_per_epoch, **self.options)
        if self.switch_to_lbfgs_after is None:
            return first
        return optim.SwitchSchedule(
            first, lambda: build_optimizer("lbfgs", self.params, **self.options),
            self.switch_to_lbfgs_after)

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

        def closure():
            model.zero_grad()
            out = model.forward(xb)
            loss = crit.forward(out, yb)
            if not math.isfinite(loss):
                raise TrainingDiverged(self.epoch + 1, self.step_count + 1, loss)
            if first[0]:
                confusion.add(_predict_labels(out), yb)
                first[0] = False
            model.backward(crit.backward(), need_input_grad=False)
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
        n = x.shape[0]
        self.order = self.data_rng.permutation(n)
        confusion = ConfusionMatrix(self._n_classes(y))
        self.model.train()
        bar = self._bar(n, f"epoch {epoch}")
        total_loss, seen = 0.0, 0
        start = time.perf_counter()
        try:
            for lo in range(0, n, self.batch_size):
                idx = self.order[lo:lo + self.batch_size]
                xb, yb = x[idx], y[idx]
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
    def fit(self, train_x, train_y, test_x=None, test_y=None, epochs=1, resume=True):
        """Train until ``epochs`` epochs are done in total (resuming from a checkpoint).

        Returns ``self.history``: one plain dict per finished epoch, the EpochStats fields
        without the confusion matrices, including the epochs done before a resume (restored
        from the checkpoint).
        """
        self._n_train = train_x.shape[0]
        if self.threads is not None:
            set_num_threads(self.threads)
        if self.save_dir and resume:
            self.load_checkpoint()
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

    def _report(self, stats):
        if not self.verbose:
            return
        print(f"epoch {stats.epoch}: {1000 * stats.seconds_per_sample:.3f} ms/sample, "
              f"{stats.seconds:.1f} s, {get_num_threads()} threads")
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
                "dtype": str(self.params.dtype), "n_params": int(self.params.size)}
        arrays.update({f"buffer/{i:03d}": np.asarray(b)
                       for i, b in enumerate(self.model.buffers())})
        atomic_savez(self._path("checkpoint.npz"), params=self.params,
                     order=self.order if self.order is not None else np.empty(0, np.intp),
                     __meta__=np.array(json.dumps(meta, default=_json_default)), **arrays)

    def _model_rng_state(self):
        for m in self.model.modules():
            if m.stochastic and m.rng is not None:
                return m.rng.bit_generator.state
        return None

    def load_checkpoint(self):
        """Restore from ``checkpoint.npz`` in ``save_dir`` if present. Returns True if so."""
        path = self._path("checkpoint.npz")
        if not os.path.exists(path):
            return False
        with np.load(path, allow_pickle=False) as ck:
            meta = json.loads(str(ck["__meta__"]))
            if meta["n_params"] != self.params.size or meta["dtype"] != str(self.params.dtype):
                raise ValueError(f"{path}: checkpoint is for a different model "
                                 f"({meta['n_params']} {meta['dtype']} parameters, this model "
                                 f"has {self.params.size} {self.params.dtype}); use another "
                                 f"save folder")
            self.params[...] = ck["params"]
            self.order = ck["order"].copy()
            opt_arrays = {k[4:]: ck[k].copy() for k in ck.files if k.startswith("opt/")}
            self.model.load_buffers([ck[k] for k in sorted(ck.files)
                                     if k.startswith("buffer/")], path)
        self.epoch, self.step_count = meta["epoch"], meta["step"]
        self.history = meta["history"]
        self.data_rng.bit_generator.state = meta["data_rng"]
        if meta["model_rng"] is not None:
            for m in self.model.modules():
                if m.stochastic and m.rng is not None:
                    m.rng.bit_generator.state = meta["model_rng"]
                    break
        if meta["optimizer_scalars"] or opt_arrays:
            self._stepper = self._make_stepper()
            self._stepper.load_state_dict({**meta["optimizer_scalars"], **opt_arrays})
            self._optimizer_for_epoch(max(self.epoch, 1))
        if self.verbose:
            print(f"resumed from {path} at epoch {self.epoch}")
        return True


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
