"""One run of an experiment matrix: lock its folder, branch, train, record.

:func:`execute_run` is what every executor runs, in a local process or as a Dask task: it
locks the run's folder, writes config.json, optionally starts from another run's checkpoint
(a *branch*, below), calls the train function with a per-epoch callback that rewrites
metrics.csv, and always ends by writing final.json: "ok", "failed" (error text and
traceback) or "diverged". The train function is named by an import path
(``"module:function"``) rather than passed as an object so that it crosses process and
machine boundaries as a plain string; tests swap in cheap fakes the same way.

Branching. Runs that share their first ``k`` epochs need not recompute them: the homework's
"SGD, then L-BFGS after epoch k" is SGD alone up to epoch k (same seed, data order and
model), and a 5-epoch run is the first 5 epochs of a 30-epoch run of the same config. A run
may therefore name a parent run and an epoch ``k``; the parent keeps its checkpoint after
epoch ``k`` (``checkpoint-epoch<k>.npz``) and the child starts from a copy of it, so its
history, weights, optimizer state and random streams at epoch ``k`` are exactly the parent's,
which are exactly what the child would have computed itself. :func:`branch_compatible`
decides when that holds: the two configs may differ only in :data:`BRANCH_KEYS`, settings
that act after epoch ``k`` only. Without the parent's checkpoint (not written yet, or no
shared storage) the child trains from scratch: slower, same numbers.

:func:`run_task` wraps :func:`execute_run` for a Dask worker that shares no storage with the
client: it trains in a scratch folder of its own machine and returns the record together with
the run's small files, which :func:`write_returned_files` writes on the client.
"""
import base64
import hashlib
import importlib
import os
import socket
import subprocess
import tempfile
import time
import traceback

from ..serialization import atomic_write_bytes
from .store import RunDir, RunLock, environmental_error, write_json, write_metrics

__all__ = ["execute_run", "train_run", "run_task", "load_data", "branch_compatible",
           "write_returned_files", "summarize", "BRANCH_KEYS", "DEFAULT_TRAIN_FN", "RETURNED_FILES"]

DEFAULT_TRAIN_FN = "fastconv.experiments.worker:train_run"
# Config settings that act only after the L-BFGS switch, or not at all before epoch k.
BRANCH_KEYS = ("epochs", "switch_to_lbfgs_after", "lbfgs_mode", "lbfgs_batch_size",
               "lbfgs_max_iter")
# Marks a run folder whose checkpoint.npz came from the parent it branches from.
BRANCH_FILE = "branch.json"
# The small files a run's record carries back to a client without shared storage.
RETURNED_FILES = ("config.json", "metrics.csv", "train.log", "test.log")
# model.npz travels too when it is at most this large (the linear and MLP models; the
# convnets' 1.7 MB float32 models stay on the worker).
MAX_RETURNED_MODEL = 1 << 20
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _resolve(train_fn):
    module, _, name = train_fn.partition(":")
    if not module or not name:
        raise ValueError(f"train function must be given as 'module:function'; got {train_fn!r}")
    return getattr(importlib.import_module(module), name)


def _is_divergence(exc):
    # Matched by name: custom train functions raise their own class of that name.
    return any(cls.__name__ == "TrainingDiverged" for cls in type(exc).__mro__)


def branch_compatible(parent, child, epoch):
    """True if ``child``'s first ``epoch`` epochs are exactly ``parent``'s.

    The configs must be equal except for :data:`BRANCH_KEYS`; the parent must run at least
    ``epoch`` epochs; and an L-BFGS switch in either run must come at ``epoch`` or later (so
    that both train with the same optimizer up to ``epoch``). L-BFGS settings only differ
    harmlessly when L-BFGS is not the run's own optimizer.
    """
    epoch = int(epoch)
    if epoch < 1 or parent.get("epochs", 0) < epoch or child.get("epochs", 0) < epoch:
        return False
    keys = set(parent) | set(child)
    if any(parent.get(k) != child.get(k) for k in keys - set(BRANCH_KEYS)):
        return False
    for config in (parent, child):
        switch = config.get("switch_to_lbfgs_after")
        if switch is not None and switch < epoch:
            return False
    if parent.get("optimizer") == "lbfgs":
        return all(parent.get(k) == child.get(k) for k in BRANCH_KEYS[1:])
    return True


def _copy_atomic(src, dst):
    # One atomic writer for the package: a full disk leaves no half copy behind.
    with open(src, "rb") as f:
        atomic_write_bytes(dst, f.read())


def _code_version():
    """fastconv's version, and the git commit when it runs from a checkout."""
    import fastconv

    version = {"fastconv": getattr(fastconv, "__version__", "unknown")}
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(fastconv.__file__)))
        if out.returncode == 0:
            version["commit"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def execute_run(config, out, key, threads=1, train_fn=DEFAULT_TRAIN_FN, branch=None,
                keep_epochs=()):
    """Train one run into ``<out>/runs/<key>/`` and return its final.json content.

    Parameters
    ----------
    config : dict
        The run's canonical config.
    out : str
        The matrix's output folder.
    key : str
        ``config_key(config)``.
    threads : int
        Kernel threads for this run, set explicitly: Dask workers start with OpenMP/BLAS at
        one thread and a local worker must not take every core when J runs share them.
    train_fn : str
        ``"module:function"`` with signature ``(config, run_dir, threads, on_epoch) -> dict``;
        ``on_epoch(history)`` is called with the full history after every epoch. The train
        function resumes from ``run_dir/checkpoint.npz`` when it exists.
    branch : dict, optional
        ``{"key": parent_key, "config": parent_config, "epoch": k}``: start from the parent's
        checkpoint after epoch ``k`` when it exists and :func:`branch_compatible` holds.
    keep_epochs : iterable of int
        Epochs after which to keep a copy of the checkpoint for branching runs.

    Returns
    -------
    dict or None
        The final record, or None when another live process holds the run's lock.

    Raises
    ------
    OSError
        One about the machine (:func:`~fastconv.experiments.store.environmental_error`:
        full disk, unwritable folder...), met anywhere in the run: nothing is recorded, so
        that a rerun once it is fixed resumes the run from its last checkpoint.

    Damaged run files (:meth:`RunDir.damaged`) are set aside first: a finished run gets its
    config.json and metrics.csv back from its config and final.json; a run whose final.json
    is damaged is resumed from its checkpoint, or trained again.
    """
    run = RunDir(out, key)
    lock = RunLock(run.path)
    if not lock.acquire():
        return None
    try:
        run.set_aside_damaged()
        existing = run.final
        if existing is not None:
            _restore_finished(run, config, existing)
            return existing
        run.write_config(config)
        branched = _branch(run, out, config, branch)
        keep = {int(e) for e in keep_epochs}
        start = time.time()
        history = []

        def on_epoch(hist):
            history[:] = [dict(h) for h in hist]
            write_metrics(run.file("metrics.csv"), history)
            done = int(history[-1]["epoch"]) if history else 0
            checkpoint = run.file("checkpoint.npz")
            if done in keep and os.path.exists(checkpoint):
                _copy_atomic(checkpoint, run.snapshot(done))

        record = {"key": key, "status": "ok", "error": None, "traceback": None,
                  "threads": threads, "host": socket.gethostname(), "pid": os.getpid(),
                  "branched_from": branched, **_code_version()}
        extra = {}
        try:
            extra = _resolve(train_fn)(config, run.path, threads, on_epoch) or {}
        except Exception as exc:  # recorded, not raised: the matrix goes on without this run
            if environmental_error(exc) is not None:
                raise
            record["status"] = "diverged" if _is_divergence(exc) else "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc()
        record.update(summarize(history), wall_seconds=time.time() - start,
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        # What the train function measured itself wins: a recipe run's test accuracy is
        # that of its selected model, evaluated once after training.
        record.update(extra)
        record["history"] = history
        write_json(run.file("final.json"), record)
        return record
    finally:
        lock.release()


def _restore_finished(run, config, final):
    """Rewrite a finished run's missing config.json and metrics.csv (set aside as damaged)
    from what it is known by: its config and final.json's history."""
    if run.config is None:
        run.write_config(config)
    if not os.path.exists(run.file("metrics.csv")):
        write_metrics(run.file("metrics.csv"), final.get("history", []))


def _branch(run, out, config, branch):
    """Copy the parent's epoch-k checkpoint into a fresh run; the branch record or None."""
    if not branch or os.path.exists(run.file("checkpoint.npz")) or run.metrics:
        return None
    epoch = int(branch["epoch"])
    if not branch_compatible(branch["config"], config, epoch):
        raise ValueError(f"run {run.key} cannot branch from {branch['key']} at epoch {epoch}: "
                         f"their configs differ before that epoch")
    snapshot = RunDir(out, branch["key"]).snapshot(epoch)
    if not os.path.exists(snapshot):
        return None
    record = {"key": branch["key"], "epoch": epoch}
    write_json(run.file(BRANCH_FILE), record)
    _copy_atomic(snapshot, run.file("checkpoint.npz"))
    return record


def summarize(history):
    """Epochs done, training seconds, last and best test accuracy of a history."""
    if not history:
        return {"epochs_done": 0, "train_seconds": 0.0, "test_accuracy": None,
                "best_test_accuracy": None, "accuracy": None}
    last = history[-1]
    tests = [h["test_accuracy"] for h in history if h.get("test_accuracy") is not None]
    return {"epochs_done": int(last["epoch"]),
            "train_seconds": float(sum(h.get("seconds", 0.0) for h in history)),
            "accuracy": last.get("accuracy"), "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": max(tests) if tests else None}


# -- the real training -------------------------------------------------------------------------

def load_data(spec):
    """The data set a config's ``data`` entry names.

    ``{"source": "sample" | "mnist", "size": "full" | "small" | [n_train, n_test],
    "dtype": "float32" | "float64"}``; ``sample`` is the real-MNIST sample shipped with
    fastconv (:func:`fastconv.datasets.load_mnist_sample`), ``mnist`` the real files
    (``FASTCONV_DATA``, the cache or a download, on the machine that trains).
    """
    import numpy as np
    from fastconv.datasets import load_mnist, load_mnist_sample

    dtype = np.dtype(spec.get("dtype", "float32"))
    size = spec["size"] if isinstance(spec["size"], str) else tuple(spec["size"])
    if spec["source"] == "sample":
        return load_mnist_sample(size=size, dtype=dtype)
    if spec["source"] == "mnist":
        return load_mnist(size=size, dtype=dtype)
    raise ValueError(f"unknown data source {spec['source']!r}; use 'sample' or 'mnist'")


def is_recipe(config):
    """Whether ``config`` is a recipe run (optimizer and schedule as specs, a validation
    split, the test set evaluated once) rather than one of the homework driver's."""
    return isinstance(config.get("optimizer"), dict)


#: The test-set class probabilities of a recipe run's selected model (float32, < 1 MB),
#: from which the report forms ensembles.
TEST_OUTPUTS = "test_probabilities.npz"


def train_recipe(config, run_dir, threads, on_epoch):
    """Train a recipe run: choose the epoch on the validation split, test that model once.

    ``config`` holds ``model``, ``loss``, ``label_smoothing``, ``dropout``, ``extra_conv``,
    ``augment`` (``build_model``'s rotate/translate/scale/shear), ``optimizer`` and
    ``schedule`` (settings of :func:`fastconv.optim.as_spec` / :func:`~fastconv.optim.
    as_schedule`), ``batch_size``, ``validation`` (held out of the training images),
    ``select`` (the validation metric that picks the epoch), ``epochs``, ``seed``, ``data``
    and ``test``. The test set is never evaluated during training; after the last epoch,
    unless ``test`` is false (a candidate of a recipe search), the selected epoch's model is
    evaluated on it once, and its class probabilities are kept.
    """
    import numpy as np

    import fastconv
    from fastconv.callbacks import BestModel, Callback
    from fastconv.nn import build_model, make_loss
    from fastconv.serialization import atomic_savez
    from fastconv.train import CheckpointError, Trainer

    fastconv.set_num_threads(threads)
    data = load_data(config["data"])
    augment = dict(config.get("augment") or {})

    def fresh_model():
        return build_model(config["model"], loss=config["loss"],
                           extra_conv=config["extra_conv"], dropout=config["dropout"],
                           dtype=data.train_x.dtype, seed=config["seed"], **augment)

    model = fresh_model()
    best = BestModel(config["select"])

    class Record(Callback):
        def on_epoch_end(self, trainer, stats):
            on_epoch(trainer.history)

    def trainer():
        return Trainer(model, make_loss(config["loss"],
                                        label_smoothing=config.get("label_smoothing", 0.0)),
                       config["optimizer"], schedule=config.get("schedule"),
                       batch_size=config["batch_size"], callbacks=[best, Record()],
                       seed=config["seed"], threads=threads, save_dir=run_dir,
                       progress=False, metadata=data.metadata(), verbose=False)

    fit = dict(epochs=config["epochs"], validation=config["validation"])
    t = trainer()
    try:
        t.fit(data.train_x, data.train_y, **fit)
    except CheckpointError:
        checkpoint = os.path.join(run_dir, "checkpoint.npz")
        os.replace(checkpoint, checkpoint + ".damaged")
        best.__init__(config["select"])
        model = fresh_model()
        t = trainer()
        t.fit(data.train_x, data.train_y, **fit)
    if t.history:
        on_epoch(t.history)
    chosen = {"threads_used": fastconv.get_num_threads(), "selected_epoch": best.epoch,
              "selected_by": config["select"], "selected_value": best.value,
              "test_accuracy": None, "best_test_accuracy": None, "test_evaluations": 0}
    if not config.get("test", True):
        return chosen       # a search candidate: compared on validation alone
    best.load_into(t.model)
    test = t.evaluate(data.test_x, data.test_y)
    probabilities = _class_probabilities(t, data.test_x, config["loss"])
    atomic_savez(os.path.join(run_dir, TEST_OUTPUTS),
                 probabilities=probabilities.astype(np.float32), labels=data.test_y)
    return {**chosen, "test_accuracy": test.accuracy, "test_loss": test.loss,
            "test_mean_class_accuracy": test.mean_class_accuracy, "test_evaluations": 1}


def _class_probabilities(trainer, x, loss, batch_size=250):
    """The model's class probabilities on ``x`` (evaluation mode)."""
    import numpy as np

    model = trainer.model
    model.eval()
    out = []
    for lo in range(0, x.shape[0], batch_size):
        scores = np.asarray(model.forward(x[lo:lo + batch_size]), dtype=np.float64)
        if loss == "nll":
            p = np.exp(scores)
        else:
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        out.append(p)
    model.train()
    return np.concatenate(out)


def train_run(config, run_dir, threads, on_epoch):
    """Train ``config`` with :class:`fastconv.train.Trainer`, resuming from ``run_dir``.

    A recipe run (:func:`is_recipe`) is trained by :func:`train_recipe`.

    Epochs are driven one ``fit`` call at a time so that metrics.csv is rewritten after each;
    the trainer itself checkpoints every epoch, so a killed run loses at most the epoch in
    progress. A damaged checkpoint is set aside as ``checkpoint.npz.damaged`` and the run
    trained from scratch. Settings missing from ``config`` take the Trainer's defaults.
    """
    if is_recipe(config):
        return train_recipe(config, run_dir, threads, on_epoch)
    import fastconv
    from fastconv.nn import build_model
    from fastconv.train import CheckpointError, homework_trainer

    fastconv.set_num_threads(threads)
    data = load_data(config["data"])
    model = build_model(config["model"], loss=config["loss"], extra_conv=config["extra_conv"],
                        dropout=config["dropout"], rotate=config["rotate"],
                        dtype=data.train_x.dtype, seed=config["seed"])
    metadata = {"normalization": data.normalization.to_dict() if data.normalization else None}
    optional = {k: config[k] for k in ("lbfgs_mode", "lbfgs_batch_size", "lbfgs_max_iter",
                                       "lr_schedule", "schedule_epochs") if k in config}
    trainer = homework_trainer(
        model, loss=config["loss"], optimizer=config["optimizer"],
        batch_size=config["batch_size"], lr=config["lr"], lr_decay=config["lr_decay"],
        weight_decay=config["weight_decay"], momentum=config["momentum"],
        t0_epochs=config["t0_epochs"], max_iter=config["max_iter"],
        switch_to_lbfgs_after=config["switch_to_lbfgs_after"], seed=config["seed"],
        threads=threads, save_dir=run_dir, progress=False, metadata=metadata, verbose=False,
        **optional)
    branched = os.path.exists(os.path.join(run_dir, BRANCH_FILE))
    try:
        resumed = trainer.load_checkpoint(branch=branched, data=(data.train_x, data.train_y))
    except CheckpointError:
        # A damaged checkpoint is no result (a checkpoint of other settings is, and still
        # fails the run): keep its bytes beside it and train the run from scratch, which
        # computes the same numbers. The Trainer is as it was before the attempt.
        checkpoint = os.path.join(run_dir, "checkpoint.npz")
        os.replace(checkpoint, checkpoint + ".damaged")
        resumed = False
    resumed_at = trainer.epoch if resumed else 0
    if trainer.history:
        on_epoch(trainer.history)
        if trainer.epoch >= config["epochs"] and not os.path.exists(
                os.path.join(run_dir, "model.npz")):
            trainer.save_checkpoint()   # a branch with nothing left to train: its model file
    for epoch in range(trainer.epoch + 1, config["epochs"] + 1):
        on_epoch(trainer.fit(data.train_x, data.train_y, data.test_x, data.test_y,
                             epochs=epoch, resume=False))
    return {"resumed_at_epoch": resumed_at, "threads_used": fastconv.get_num_threads()}


# -- a worker without shared storage ----------------------------------------------------------

def _scratch_out(out):
    """A folder of this machine's own for the runs of the client's matrix folder ``out``."""
    tag = hashlib.sha256(f"{os.fspath(out or '')}".encode("utf-8")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "fastconv-runs", tag)


def run_task(config, key, threads=1, train_fn=DEFAULT_TRAIN_FN, out=None, branch=None,
             keep_epochs=(), shared_storage=False):
    """What a Dask worker executes: :func:`execute_run`, returning the run's small files.

    Parameters
    ----------
    config, key, threads, train_fn, branch, keep_epochs
        As :func:`execute_run`.
    out : str
        The client's matrix folder.
    shared_storage : bool
        True: this machine sees ``out`` too; train in it (interrupted runs then resume from
        their checkpoints on any worker). False: train in a scratch folder of this machine's
        own, named after ``out`` (a rerun on the same machine still resumes there).

    Returns
    -------
    dict
        The final record, with ``"files"``: {name: base64 bytes} of :data:`RETURNED_FILES`
        (and ``model.npz`` when small), for :func:`write_returned_files`.
    """
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass
    folder = out if shared_storage else _scratch_out(out)
    record = execute_run(config, folder, key, threads, train_fn, branch=branch,
                         keep_epochs=keep_epochs)
    if record is None:
        raise RuntimeError(f"run {key} is locked by another live process")
    run = RunDir(folder, key)
    files = {}
    for name in RETURNED_FILES + ("model.npz",):
        path = run.file(name)
        if os.path.exists(path) and (name != "model.npz"
                                     or os.path.getsize(path) <= MAX_RETURNED_MODEL):
            with open(path, "rb") as f:
                files[name] = base64.b64encode(f.read()).decode("ascii")
    return {**record, "files": files}


def write_returned_files(out, key, record):
    """Write a run's folder on the client from a :func:`run_task` record (atomically).

    Files the client already has (shared storage) are left as they are; final.json is
    written last, so a run counts as finished only once everything else is there.
    """
    from fastconv.serialization import atomic_write_bytes

    run = RunDir(out, key)
    record = dict(record)
    files = record.pop("files", {}) or {}
    os.makedirs(run.path, exist_ok=True)
    run.set_aside_damaged()
    for name, data in files.items():
        if os.path.basename(name) != name or name == "final.json":
            continue
        if not os.path.exists(run.file(name)):
            atomic_write_bytes(run.file(name), base64.b64decode(data))
    if not os.path.exists(run.file("metrics.csv")):
        write_metrics(run.file("metrics.csv"), record.get("history", []))
    if run.final is None:
        write_json(run.file("final.json"), record)
    return record
