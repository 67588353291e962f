"""Executing runs: one training job per process, locally or on a Dask cluster.

The worker side is :func:`execute_run`: it locks the run's folder, writes config.json, calls
the train function with a per-epoch callback that rewrites metrics.csv, and always ends by
writing final.json, "ok", "failed" (error text and traceback) or "diverged". The train
function is named by an import path (``"module:function"``) rather than passed as an object so
that it crosses process and machine boundaries as a plain string; the tests swap in cheap fakes
the same way.

The driver side schedules runs. :class:`LocalExecutor` starts a fresh ``spawn`` process per run
(J at a time): a segfault or an out-of-memory kill ends that run only, and the driver records it
from the exit code. :class:`DaskExecutor` submits the same function to a Dask cluster.
"""
import ctypes
import importlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import wait

from ._store import RunDir, RunLock, write_json, write_metrics

__all__ = ["execute_run", "train_run", "LocalExecutor", "DaskExecutor", "DEFAULT_TRAIN_FN",
           "threads_per_job", "usable_cores", "Progress"]

DEFAULT_TRAIN_FN = "bench._runner:train_run"
# Exit code of a worker that found its run locked by another live process.
EXIT_BUSY = 75
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs, cores=None):
    """``cores // jobs``, at least 1: J concurrent runs never use more threads than cores."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def _resolve(train_fn):
    module, _, name = train_fn.partition(":")
    if not module or not name:
        raise ValueError(f"train function must be given as 'module:function'; got {train_fn!r}")
    return getattr(importlib.import_module(module), name)


def _is_divergence(exc):
    # Matched by name: importing fastconv.train here would tie this module (and the tests of
    # the scheduling) to the compiled kernels.
    return any(cls.__name__ == "TrainingDiverged" for cls in type(exc).__mro__)


def execute_run(config, out, key, threads=1, train_fn=DEFAULT_TRAIN_FN):
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
        ``on_epoch(history)`` is called with the full history after every epoch.

    Returns
    -------
    dict or None
        The final record, or None when another live process holds the run's lock.
    """
    run = RunDir(out, key)
    lock = RunLock(run.path)
    if not lock.acquire():
        return None
    try:
        existing = run.final
        if existing is not None:
            return existing
        run.write_config(config)
        start = time.time()
        history = []

        def on_epoch(hist):
            history[:] = [dict(h) for h in hist]
            write_metrics(run.file("metrics.csv"), history)

        record = {"key": key, "status": "ok", "error": None, "traceback": None,
                  "threads": threads, "host": socket.gethostname(), "pid": os.getpid()}
        try:
            extra = _resolve(train_fn)(config, run.path, threads, on_epoch) or {}
            record.update(extra)
        except Exception as exc:  # recorded, not raised: the matrix goes on without this run
            record["status"] = "diverged" if _is_divergence(exc) else "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc()
        record.update(_summary(history), wall_seconds=time.time() - start,
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        record["history"] = history
        write_json(run.file("final.json"), record)
        return record
    finally:
        lock.release()


def _summary(history):
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
    """The data set a config's ``data`` entry names (see :class:`bench.experiments.Preset`)."""
    import json

    import numpy as np
    from fastconv.datasets import load_mnist

    dtype = np.dtype(spec.get("dtype", "float32"))
    size = spec["size"] if isinstance(spec["size"], str) else tuple(spec["size"])
    if spec["source"] == "subset":
        folder = os.path.join(_REPO, "tests", "data")
        with open(os.path.join(folder, "sha256.json")) as f:
            sha = json.load(f)
        return load_mnist(folder=folder, size=size, dtype=dtype, expected_sha256=sha,
                          offline=True)
    if spec["source"] == "mnist":
        return load_mnist(size=size, dtype=dtype)
    raise ValueError(f"unknown data source {spec['source']!r}; use 'subset' or 'mnist'")


def train_run(config, run_dir, threads, on_epoch):
    """Train ``config`` with :class:`fastconv.train.Trainer`, resuming from ``run_dir``.

    Epochs are driven one ``fit`` call at a time so that metrics.csv is rewritten after each;
    the trainer itself checkpoints every epoch, so a killed run loses at most the epoch in
    progress.
    """
    import fastconv
    from fastconv.nn import build_model
    from fastconv.train import Trainer

    fastconv.set_num_threads(threads)
    data = load_data(config["data"])
    model = build_model(config["model"], loss=config["loss"], extra_conv=config["extra_conv"],
                        dropout=config["dropout"], rotate=config["rotate"],
                        dtype=data.train_x.dtype, seed=config["seed"])
    metadata = {"normalization": data.normalization.to_dict() if data.normalization else None}
    trainer = Trainer(model, loss=config["loss"], optimizer=config["optimizer"],
                      batch_size=config["batch_size"], lr=config["lr"],
                      lr_decay=config["lr_decay"], weight_decay=config["weight_decay"],
                      momentum=config["momentum"], t0_epochs=config["t0_epochs"],
                      max_iter=config["max_iter"],
                      switch_to_lbfgs_after=config["switch_to_lbfgs_after"],
                      seed=config["seed"], threads=threads, save_dir=run_dir, progress=False,
                      metadata=metadata, verbose=False)
    resumed_at = trainer.epoch if trainer.load_checkpoint() else 0
    if trainer.history:
        on_epoch(trainer.history)
    for epoch in range(trainer.epoch + 1, config["epochs"] + 1):
        on_epoch(trainer.fit(data.train_x, data.train_y, data.test_x, data.test_y,
                             epochs=epoch, resume=False))
    return {"resumed_at_epoch": resumed_at, "threads_used": fastconv.get_num_threads()}


# -- local processes -----------------------------------------------------------------------------

def _die_with_parent(parent_pid):
    """Make this process exit when the driver does, even if the driver is SIGKILLed.

    Otherwise an orphaned worker would go on training, racing the next invocation of the
    driver for the same run folder (the run lock would make that invocation wait for it).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: fall back to watching the parent
        def watch():
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)


def _local_worker(config, out, key, threads, train_fn, parent_pid):
    _die_with_parent(parent_pid)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    record = execute_run(config, out, key, threads, train_fn)
    sys.stdout.flush()
    if record is None:
        os._exit(EXIT_BUSY)


class Progress:
    """tqdm bar over the runs to execute, with done / running / failed / left counts."""

    def __init__(self, total, enabled=True):
        self.counts = {"done": 0, "running": 0, "failed": 0, "left": total}
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="run", desc="runs", dynamic_ncols=True)
            self._show()

    def _show(self):
        if self.bar is not None:
            self.bar.set_postfix(self.counts, refresh=True)

    def started(self):
        self.counts["running"] += 1
        self.counts["left"] -= 1
        self._show()

    def requeued(self):
        self.counts["running"] -= 1
        self.counts["left"] += 1
        self._show()

    def finished(self, status):
        self.counts["running"] -= 1
        self.counts["done" if status == "ok" else "failed"] += 1
        if self.bar is not None:
            self.bar.update(1)
        self._show()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _exit_reason(code):
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _record_lost(out, key, config, error, threads):
    """final.json for a run whose worker died without writing one."""
    run = RunDir(out, key)
    if run.final is not None:
        return run.final
    history = run.metrics
    record = {"key": key, "status": "failed", "error": error, "traceback": None,
              "threads": threads, **_summary(history), "history": history}
    if run.config is None:
        run.write_config(config)
    write_json(run.file("final.json"), record)
    return record


class LocalExecutor:
    """Run J runs at once on this machine, each in a fresh ``spawn`` process.

    Parameters
    ----------
    jobs : int
        Concurrent runs; each gets ``cores // jobs`` threads.
    train_fn : str
        ``"module:function"`` passed to :func:`execute_run`.
    poll : float
        Seconds between checks for runs locked by another process.
    """

    def __init__(self, jobs=1, train_fn=DEFAULT_TRAIN_FN, poll=1.0):
        self.jobs = max(1, int(jobs))
        self.threads = threads_per_job(self.jobs)
        self.train_fn = train_fn
        self.poll = poll

    def run(self, runs, out, progress):
        """Execute ``runs`` (list of :class:`bench.experiments.Run`); return {key: record}."""
        ctx = multiprocessing.get_context("spawn")
        queue = list(runs)
        running = {}
        results = {}
        while queue or running:
            while queue and len(running) < self.jobs:
                run = queue.pop(0)
                proc = ctx.Process(target=_local_worker, name=f"run-{run.key}",
                                   args=(run.config, out, run.key, self.threads,
                                         self.train_fn, os.getpid()))
                proc.start()
                running[proc.sentinel] = (proc, run)
                progress.started()
            ready = wait(list(running), timeout=self.poll)
            for sentinel in ready:
                proc, run = running.pop(sentinel)
                proc.join()
                if proc.exitcode == EXIT_BUSY:
                    # Another live process is training it; look again once it may be done.
                    queue.append(run)
                    progress.requeued()
                    if not running:
                        time.sleep(self.poll)
                    continue
                final = RunDir(out, run.key).final
                if final is None:
                    final = _record_lost(out, run.key, run.config,
                                         f"worker process {_exit_reason(proc.exitcode)} "
                                         f"before recording a result", self.threads)
                results[run.key] = final
                progress.finished(final.get("status"))
        return results


# -- Dask ---------------------------------------------------------------------------------------

def _dask_task(config, out, key, threads, train_fn, repo):
    """What a Dask worker runs: :func:`execute_run` with explicit threads.

    Returns the record and the run's config so that a driver without access to the workers'
    storage can write the results itself.
    """
    if repo not in sys.path:
        sys.path.insert(0, repo)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass
    record = execute_run(config, out, key, threads, train_fn)
    if record is None:
        raise RuntimeError(f"run {key} is locked by another live process")
    return record


class DaskExecutor:
    """Submit runs as tasks to an existing ``dask.distributed`` cluster.

    Each task writes its run folder itself (shared storage); the driver also writes any
    final.json it cannot see, from the returned record, so a cluster without shared storage
    still yields a complete report. A worker that dies mid-task makes the scheduler resubmit
    the task elsewhere (the run resumes from its checkpoint when storage is shared); a task
    that still cannot complete, or raises, is recorded as failed and the other runs go on.

    Workers must be able to import ``bench`` (the repository on shared storage or on their
    ``PYTHONPATH``) and ``fastconv``: the task is sent by reference, not by value.

    Parameters
    ----------
    address : str or distributed.Client
        Scheduler address (``tcp://host:8786``) or a connected client.
    threads : int
        Kernel threads per run (one task per worker thread slot is the usual setup).
    retries : int
        Extra attempts, by the scheduler, of a task that raised.
    worker_loss_retries : int
        Fresh submissions of a run whose task the scheduler gave up on after worker deaths
        (``KilledWorker``), on top of the scheduler's own ``allowed-failures``.
    """

    def __init__(self, address, threads=1, train_fn=DEFAULT_TRAIN_FN, retries=1,
                 worker_loss_retries=2):
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise SystemExit("--dask needs dask.distributed, which is not installed: "
                             "pip install -e '.[dask]'  (or pip install 'dask[distributed]')"
                             ) from exc
        self.client = address if isinstance(address, Client) else Client(address)
        self.threads = max(1, int(threads))
        self.train_fn = train_fn
        self.retries = retries
        self.worker_loss_retries = worker_loss_retries

    def _submit(self, run, out, attempt):
        return self.client.submit(_dask_task, run.config, os.path.abspath(out), run.key,
                                  self.threads, self.train_fn, _REPO,
                                  key=f"fastconv-run-{run.key}-{attempt}", pure=False,
                                  retries=self.retries)

    def run(self, runs, out, progress):
        from dask.distributed import as_completed

        futures = {}
        for run in runs:
            futures[self._submit(run, out, 0)] = (run, 0)
            progress.started()
        results = {}
        pending = as_completed(futures)
        for fut in pending:
            run, attempt = futures.pop(fut)
            try:
                record = fut.result()
                stored = RunDir(out, run.key)
                if stored.final is None:
                    stored.write_config(run.config)
                    write_metrics(stored.file("metrics.csv"), record.get("history", []))
                    write_json(stored.file("final.json"), record)
            except Exception as exc:  # KilledWorker, a raising task: record it and go on
                if (type(exc).__name__ == "KilledWorker"
                        and attempt < self.worker_loss_retries):
                    # The scheduler gave up after its own allowed-failures: the worker may
                    # have died for reasons unrelated to this run (another task, the OOM
                    # killer), so give the run a fresh task before declaring it failed.
                    retry = self._submit(run, out, attempt + 1)
                    futures[retry] = (run, attempt + 1)
                    pending.add(retry)
                    continue
                record = _record_lost(out, run.key, run.config,
                                      f"dask task failed: {type(exc).__name__}: {exc}",
                                      self.threads)
            results[run.key] = record
            progress.finished(record.get("status"))
        return results
