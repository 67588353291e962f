"""Scheduling runs: one training job per process, locally or on a Dask cluster.

What one run executes lives in the installed package (:mod:`fastconv.experiments`); this
module decides where and when. :class:`LocalExecutor` starts a fresh ``spawn`` process per run
(J at a time): a segfault or an out-of-memory kill ends that run only, and the driver records it
from the exit code. :class:`DaskExecutor` submits :func:`fastconv.experiments.run_task` to a
Dask cluster whose workers need only fastconv installed.

A branching run (``Run.branch``) starts once its parent has stored the checkpoint it branches
from, or once the parent is not going to (finished, failed, or not being run): then it trains
from scratch, with the same result.

Ctrl-C: the workers ignore SIGINT (the terminal sends it to the whole process group); the
driver kills them, so every run keeps its last finished epoch, and raises
:class:`Interrupted`, which ``run_all.py`` turns into one line and the command to resume.
"""
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait

from fastconv.experiments import RunDir, execute_run, write_json, write_returned_files
from fastconv.experiments.store import environmental_error
from fastconv.experiments.worker import DEFAULT_TRAIN_FN, summarize

__all__ = ["LocalExecutor", "DaskExecutor", "DEFAULT_TRAIN_FN", "Interrupted",
           "StoreUnwritable", "threads_per_job", "usable_cores", "Progress"]

# Exit code of a worker that found its run locked by another live process.
EXIT_BUSY = 75
# Exit code of a worker stopped by its machine (full disk, unwritable folder): it sent the
# error's text through its pipe and recorded nothing.
EXIT_ENVIRONMENT = 74
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Interrupted(Exception):
    """The user pressed Ctrl-C; ``results`` holds the runs that finished before."""

    def __init__(self, results):
        super().__init__("interrupted")
        self.results = results


class StoreUnwritable(Exception):
    """A run met a full disk, an unwritable folder or the like (``message``, its OSError in
    one line); the other workers were stopped and nothing was recorded as failed for it.
    ``results`` holds the runs that finished before."""

    def __init__(self, message, results):
        super().__init__(message)
        self.message = message
        self.results = results


def describe_os_error(exc, where=None):
    """One line for an environmental OSError: the file (or ``where`` it happened, when the
    error names none, as a write into an open file does), and what is wrong."""
    what = exc.strerror or str(exc)
    where = exc.filename or where
    return f"{where}: {what}" if where else what


def usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def threads_per_job(jobs, cores=None):
    """``cores // jobs``, at least 1: J concurrent runs never use more threads than cores."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


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


def _local_worker(config, out, key, threads, train_fn, branch, keep, parent_pid, report):
    _die_with_parent(parent_pid)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        record = execute_run(config, out, key, threads, train_fn, branch=branch,
                             keep_epochs=keep)
    except BaseException as exc:
        cause = environmental_error(exc)
        if cause is None:
            raise
        # The driver says it in one line; a traceback per worker would bury it.
        report.send(describe_os_error(cause, f"writing run {RunDir(out, key).path}"))
        sys.stdout.flush()
        os._exit(EXIT_ENVIRONMENT)
    sys.stdout.flush()
    if record is None:
        os._exit(EXIT_BUSY)


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
              "threads": threads, **summarize(history), "history": history}
    if run.config is None:
        run.write_config(config)
    write_json(run.file("final.json"), record)
    return record


def _start_ignoring_sigint(proc):
    """Start ``proc`` with SIGINT ignored: a Ctrl-C is the driver's to handle, not a worker's.

    A process started while SIGINT is ignored keeps ignoring it (Python installs its
    KeyboardInterrupt handler only over the default disposition), so a worker never prints a
    KeyboardInterrupt traceback from the middle of a kernel.
    """
    if threading.current_thread() is not threading.main_thread():
        proc.start()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


class Progress:
    """What the driver shows while runs execute.

    On a terminal: one tqdm bar over the epochs to train, with the running runs' epochs and
    the remaining time in its postfix. Elsewhere (a log file, CI): one line per finished run,
    with its status, accuracy and the remaining estimate; no ``\\r`` bars.

    Parameters
    ----------
    tasks : list of Run
        The runs to execute, in start order.
    out : str
        The matrix folder (running runs' epochs are read from their metrics.csv).
    estimator : bench._estimate.Estimator, optional
        For the remaining time; None shows none.
    jobs : int
        Runs at once (for the remaining time).
    tty : bool, optional
        Terminal display; default: whether stderr is a terminal.
    enabled : bool
        False shows nothing.
    file : file, optional
        Where the lines go (default stderr on a terminal, stdout otherwise).
    """

    def __init__(self, tasks, out=None, estimator=None, jobs=1, tty=None, enabled=True,
                 file=None):
        self.tasks = list(tasks)
        self.out = out
        self.estimator = estimator
        self.jobs = jobs
        self.enabled = enabled and bool(self.tasks)
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.file = file if file is not None else (sys.stderr if self.tty else sys.stdout)
        self.running = {}
        self.finished_count = 0
        self.failed = 0
        self.start = time.time()
        self._base = {r.key: len(RunDir(out, r.key).metrics) if out else 0 for r in self.tasks}
        self._branched = {r.key for r in self.tasks if r.branch is not None and out
                          and not self._base[r.key]}
        self.total = sum(max(r.config["epochs"] - self._first_trained(r) + 1, 0)
                         for r in self.tasks)
        self._done_epochs = {}
        self._estimated_done = 0.0
        self.bar = None
        if self.enabled and self.tty:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, unit="epoch", desc="epochs", dynamic_ncols=True,
                            file=self.file)

    def _first_trained(self, run):
        """First epoch this invocation trains for ``run`` (branched epochs are copied)."""
        first = self._base[run.key] + 1
        if run.key in self._branched:
            first = max(first, run.branch[1] + 1)
        return first

    def _epochs(self, run):
        return len(RunDir(self.out, run.key).metrics) if self.out else 0

    def speed(self):
        """Measured over estimated time of the epochs trained so far (1 until known)."""
        elapsed = time.time() - self.start
        if self._estimated_done > 0 and elapsed > 60:
            return min(max(elapsed / self._estimated_done, 0.25), 4.0)
        return 1.0

    def remaining(self):
        """Estimated seconds left, corrected by how fast the epochs so far went."""
        if self.estimator is None:
            return None
        left = [r for r in self.tasks if r.key not in self._finished_keys()]
        done = {r.key: self._done_epochs.get(r.key, self._base[r.key]) for r in left}
        return self.estimator.wall_seconds(left, self.jobs, done) * self.speed()

    def _finished_keys(self):
        return {k for k, v in self._done_epochs.items() if v is None}

    def poll(self):
        """Read the running runs' epochs; refresh the bar."""
        if not self.enabled:
            return
        changed = False
        for run in self.running.values():
            epochs = self._epochs(run)
            before = self._done_epochs.get(run.key, self._base[run.key])
            if epochs > before:
                self._account(run, before, epochs)
                self._done_epochs[run.key] = epochs
                changed = True
        if changed or self.bar is not None:
            self._show()

    def _account(self, run, before, after):
        # Epochs stored before, or copied from the parent, took no time here.
        before = max(before, self._first_trained(run) - 1)
        if self.estimator is not None:
            self._estimated_done += sum(self.estimator.epoch_seconds(run.config, e)
                                        for e in range(before + 1, after + 1)) / self.jobs
        if self.bar is not None:
            self.bar.update(max(0, min(after, run.config["epochs"]) - max(before, 0)))

    def _left_text(self):
        left = self.remaining()
        if left is None:
            return ""
        from ._estimate import format_duration
        return f"about {format_duration(left)} left"

    def _show(self):
        if self.bar is None:
            return
        running = ", ".join(f"{r.label} {self._done_epochs.get(r.key, self._base[r.key])}/"
                            f"{r.config['epochs']}" for r in self.running.values())
        self.bar.set_postfix_str(f"{self.finished_count}/{len(self.tasks)} runs | {running} | "
                                 f"{self._left_text()}", refresh=True)

    def started(self, run):
        if not self.enabled:
            return
        self.running[run.key] = run
        self._show()

    def skipped(self, run):
        """``run`` will not start in this invocation (it does not fit the time budget)."""
        self.tasks = [r for r in self.tasks if r.key != run.key]
        if self.bar is not None:
            self.bar.total -= max(run.config["epochs"] - self._first_trained(run) + 1, 0)
            self.bar.refresh()
        elif self.enabled:
            print(f"not started (time budget): {run.family}: {run.label}", file=self.file,
                  flush=True)

    def requeued(self, run):
        self.running.pop(run.key, None)
        self._show()

    def finished(self, run, record):
        if not self.enabled:
            return
        self.running.pop(run.key, None)
        before = self._done_epochs.get(run.key, self._base[run.key])
        self._account(run, before, run.config["epochs"])
        self._done_epochs[run.key] = None
        self.finished_count += 1
        status = record.get("status")
        if status != "ok":
            self.failed += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self._show()
            return
        acc = record.get("test_accuracy")
        acc = "" if acc is None else f"{100 * acc:.2f}%"
        seconds = record.get("wall_seconds")
        took = "" if seconds is None else f"{seconds:.0f} s"
        left = self._left_text() if self.finished_count < len(self.tasks) else ""
        print(f"[{self.finished_count}/{len(self.tasks)}] {status}: {run.family}: {run.label} "
              f"({record.get('epochs_done', 0)}/{run.config['epochs']} epochs) {acc} {took}"
              + (f" | {left}" if left else ""), file=self.file, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LocalExecutor:
    """Run J runs at once on this machine, each in a fresh ``spawn`` process.

    Parameters
    ----------
    jobs : int
        Concurrent runs; each gets ``cores // jobs`` threads.
    train_fn : str
        ``"module:function"`` passed to :func:`fastconv.experiments.execute_run`.
    poll : float
        Seconds between looks at the workers (and the runs' progress).
    """

    def __init__(self, jobs=1, train_fn=DEFAULT_TRAIN_FN, poll=1.0):
        self.jobs = max(1, int(jobs))
        self.threads = threads_per_job(self.jobs)
        self.train_fn = train_fn
        self.poll = poll

    @staticmethod
    def _ready(run, out, pending_keys, running_keys):
        """A run may start: no branch, or its parent's checkpoint is there, or never will be."""
        if run.branch is None:
            return True
        parent, epoch = run.branch
        if os.path.exists(RunDir(out, parent.key).snapshot(epoch)):
            return True
        if parent.key in pending_keys or parent.key in running_keys:
            return False
        return True

    def run(self, runs, out, progress, keep=None, may_start=None):
        """Execute ``runs`` (list of :class:`bench.experiments.Run`); return {key: record}.

        ``keep`` maps a run key to the epochs whose checkpoints it keeps for branching runs;
        ``may_start(run)`` (optional) vetoes starting a run (a time budget); vetoed runs are
        left for the next invocation. Raises :class:`Interrupted` on Ctrl-C, after killing
        the workers.
        """
        keep = keep or {}
        ctx = multiprocessing.get_context("spawn")
        queue = list(runs)
        running = {}
        results = {}
        try:
            while queue or running:
                pending = {r.key for r in queue}
                active = {r.key for _, r, _ in running.values()}
                for run in list(queue):
                    if len(running) >= self.jobs:
                        break
                    if not self._ready(run, out, pending - {run.key}, active):
                        continue
                    queue.remove(run)
                    if may_start is not None and not may_start(run):
                        progress.skipped(run)
                        continue
                    receive, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_local_worker, name=f"run-{run.key}",
                                       args=(run.config, out, run.key, self.threads,
                                             self.train_fn, run.branch_spec(),
                                             keep.get(run.key, ()), os.getpid(), send))
                    _start_ignoring_sigint(proc)
                    send.close()
                    running[proc.sentinel] = (proc, run, receive)
                    active.add(run.key)
                    progress.started(run)
                ready = wait(list(running), timeout=self.poll) if running else []
                if not running:
                    time.sleep(self.poll)
                progress.poll()
                for sentinel in ready:
                    proc, run, receive = running.pop(sentinel)
                    proc.join()
                    if proc.exitcode == EXIT_BUSY:
                        # Another live process is training it; look again once it may be done.
                        receive.close()
                        queue.append(run)
                        progress.requeued(run)
                        continue
                    if proc.exitcode == EXIT_ENVIRONMENT:
                        message = receive.recv() if receive.poll() else "a run could not write"
                        receive.close()
                        raise StoreUnwritable(message, results)
                    receive.close()
                    final = RunDir(out, run.key).final
                    if final is None:
                        final = _record_lost(out, run.key, run.config,
                                             f"worker process {_exit_reason(proc.exitcode)} "
                                             f"before recording a result", self.threads)
                    results[run.key] = final
                    progress.finished(run, final)
        except KeyboardInterrupt:
            self._stop(running)
            raise Interrupted(results) from None
        except StoreUnwritable:
            self._stop(running)
            raise
        except OSError as exc:
            cause = environmental_error(exc)
            if cause is None:
                raise
            self._stop(running)
            raise StoreUnwritable(describe_os_error(cause), results) from None
        return results

    @staticmethod
    def _stop(running):
        """Kill the running workers: each keeps its last finished epoch."""
        for proc, _, _ in running.values():
            proc.kill()
        for proc, _, _ in running.values():
            proc.join(timeout=5)


class DaskExecutor:
    """Submit runs as tasks to a ``dask.distributed`` cluster.

    The task is :func:`fastconv.experiments.run_task`, sent by reference: every worker needs
    fastconv installed (and MNIST through ``FASTCONV_DATA`` or its cache), nothing else; no
    repository, no ``PYTHONPATH``, no shared disk. Each task returns its run's record and
    small files, which the client writes into its own output folder, so the report is
    complete when the workers share nothing with it. With ``shared_storage`` the workers
    train in the client's folder itself (it must be the same path on every machine), and a
    run interrupted on one worker resumes from its checkpoint on another.

    A worker that dies mid-task makes the scheduler resubmit the task elsewhere; a task that
    still cannot complete, or raises, is recorded as failed and the other runs go on.

    Parameters
    ----------
    address : str or distributed.Client
        Scheduler address (``tcp://host:8786``) or a connected client.
    threads : int
        Kernel threads per run (one task per worker thread slot is the usual setup).
    shared_storage : bool
        Workers read and write the client's output folder directly.
    retries : int
        Extra attempts, by the scheduler, of a task that raised.
    worker_loss_retries : int
        Fresh submissions of a run whose task the scheduler gave up on after worker deaths
        (``KilledWorker``), on top of the scheduler's own ``allowed-failures``.
    """

    def __init__(self, address, threads=1, train_fn=DEFAULT_TRAIN_FN, shared_storage=False,
                 retries=1, worker_loss_retries=2):
        try:
            from dask.distributed import Client
        except ImportError as exc:
            raise SystemExit("--dask needs dask.distributed, which is not installed: "
                             "pip install 'fastconv[dask]'  (or pip install "
                             "'dask[distributed]')") from exc
        self._own_client = not isinstance(address, Client)
        self.client = Client(address) if self._own_client else address
        self.threads = max(1, int(threads))
        self.train_fn = train_fn
        self.shared_storage = shared_storage
        self.retries = retries
        self.worker_loss_retries = worker_loss_retries
        self.jobs = max(1, sum(self.client.nthreads().values()))

    def _submit(self, run, out, attempt, keep):
        from fastconv.experiments import run_task

        branch = run.branch_spec() if self.shared_storage else None
        return self.client.submit(run_task, run.config, run.key, self.threads, self.train_fn,
                                  os.path.abspath(out), branch, keep.get(run.key, ()),
                                  self.shared_storage,
                                  key=f"fastconv-run-{run.key}-{attempt}", pure=False,
                                  retries=self.retries)

    def run(self, runs, out, progress, keep=None):
        from dask.distributed import as_completed

        keep = keep or {}
        futures = {}
        for run in runs:
            futures[self._submit(run, out, 0, keep)] = (run, 0)
            progress.started(run)
        results = {}
        pending = as_completed(futures)
        try:
            for fut in pending:
                run, attempt = futures.pop(fut)
                try:
                    record = write_returned_files(out, run.key, fut.result())
                except Exception as exc:  # KilledWorker, a raising task: record it, go on
                    cause = environmental_error(exc)
                    if cause is not None:
                        self.client.cancel(list(futures))
                        raise StoreUnwritable(describe_os_error(cause), results) from None
                    if (type(exc).__name__ == "KilledWorker"
                            and attempt < self.worker_loss_retries):
                        # The scheduler gave up after its own allowed-failures: the worker
                        # may have died for reasons unrelated to this run (another task, the
                        # OOM killer), so give the run a fresh task before failing it.
                        retry = self._submit(run, out, attempt + 1, keep)
                        futures[retry] = (run, attempt + 1)
                        pending.add(retry)
                        continue
                    record = _record_lost(out, run.key, run.config,
                                          f"dask task failed: {type(exc).__name__}: {exc}",
                                          self.threads)
                results[run.key] = record
                progress.finished(run, record)
        except KeyboardInterrupt:
            self.client.cancel(list(futures))
            raise Interrupted(results) from None
        finally:
            if self._own_client:
                self.client.close()
        return results
