"""What a matrix will cost before it is run: seconds per epoch of every run, and wall time.

A run's epoch costs ``n_train`` training samples and ``n_test`` evaluated ones. Their cost per
sample depends on the run's *cost class*: model (and its extra layers), optimizer, L-BFGS
mode and batch size. For each class the estimate takes, in order:

1. the measured seconds of the epochs already stored in the output folder for runs of the
   same class (the matrix's own finished work on this machine: the best evidence there is),
   the median over the epochs of the most recent few runs (:data:`RECENT_RUNS`, by their
   finishing time; a run under way counts as newest), so that a sitting slowed by other work,
   or older code, stops weighing on the estimates once newer runs exist;
2. otherwise a relative cost from :data:`RELATIVE` (measured once on the project's 2-core
   machine, every case against the default ConvNet with SGD at batch 1, one thread) times a
   per-sample cost for this machine: the median stored epoch of any class, converted by its
   relative cost, or, in an empty folder, a quick measurement (a few hundred training samples
   of the default ConvNet on one thread, about a second).

Costs are one thread's: the stored epochs of the presets ran one thread per job, and
:data:`RELATIVE` was measured on one thread. A run given more threads (one job on a 2-core
machine gets 2) is estimated at one thread's cost, an upper bound that the spare cores may
beat on a quiet machine. Calibrating at the runs' thread count instead measured whatever the
other processes were doing in that second: at batch 1 every parallel region waits for its
slowest thread, so on the shared 2-core machine two threads measured 2 to 60 times one
thread's cost, and a fresh ``--out`` with the default single job (2 threads) was estimated
at over ten times one core's measured training time of the whole matrix.

Wall time: the runs are list-scheduled onto the ``jobs`` slots in the order the executor
starts them, a branching run no earlier than its parent's branch epoch; the estimate is when
the last slot empties.
"""
import math
import time

from fastconv.experiments import RunDir

__all__ = ["RELATIVE", "cost_class", "relative_cost", "Estimator", "format_duration"]

# Seconds per training sample relative to the default ConvNet (L2 pooling, tanh) with SGD at
# batch 1, all at one thread, measured side by side with bench's cost script on 3,000 full
# MNIST images (bench/RESULTS.md, "Experiment matrix costs"). Evaluation is per test sample.
RELATIVE = {
    # convnet-bn: its recipe (batch 128, momentum, dropout, affine warps) measured at 1.22x
    # the default ConvNet's per-sample cost, side by side on one thread, with the Winograd
    # convolutions (December 2026): 0.9 once the recipe's other factors are taken out.
    "model": {"convnet": 1.0, "convnet-max": 0.84, "mlp": 0.08, "linear": 0.03,
              "convnet-bn": 0.9},
    "extra_conv": 0.24, "dropout": 0.07, "rotate": 0.27,
    "optimizer": {"sgd": 1.0, "asgd": 1.18, "cg": 3.57, "lbfgs": 4.34, "adam": 1.0,
                  "adamw": 1.0},
    "momentum": 0.15,
    # Per-sample cost of a batch-B step against batch 1 (GEMMs over B samples are cheaper).
    "batch": ((1, 1.0), (8, 0.85), (32, 0.76), (64, 0.80), (128, 0.86)),
    # L-BFGS proper on large batches (lbfgs_mode "batch"): one evaluation per sample and step
    # plus about 1.5 per iteration (the strong-Wolfe search), at the large-batch cost.
    "lbfgs_batch_evals_per_iter": 1.5,
    "eval": 0.44,
}
# Seconds a run costs besides its epochs: a fresh process, imports, loading the data.
RUN_OVERHEAD = {"sample": 2.0, "mnist": 5.0}
# How many of the most recently measured runs an estimate uses, per cost class and for the
# machine-wide unit. A sitting's speed depends on the code and on what else the machine is
# doing: the latest runs are the best evidence for the next sitting, the oldest the worst.
RECENT_RUNS = 3
RECENT_RUNS_ANY_CLASS = 6


def _batch_factor(b):
    points = RELATIVE["batch"]
    if b >= points[-1][0]:
        return points[-1][1]
    for (b0, f0), (b1, f1) in zip(points, points[1:]):
        if b0 <= b <= b1:
            w = (math.log(b) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return f0 + w * (f1 - f0)
    return 1.0


def _phases(config):
    """[(first_epoch, last_epoch, optimizer, lbfgs_mode, batch_size)] of a run."""
    epochs = config["epochs"]
    if isinstance(config["optimizer"], dict):       # a recipe run: one optimizer, one batch
        return [(1, epochs, config["optimizer"]["name"], "torch", config["batch_size"])]
    switch = config.get("switch_to_lbfgs_after")
    lbfgs = ("lbfgs", config.get("lbfgs_mode", "torch"),
             config.get("lbfgs_batch_size") or config["batch_size"])
    first = (config["optimizer"],) + ((lbfgs[1], lbfgs[2]) if config["optimizer"] == "lbfgs"
                                      else ("torch", config["batch_size"]))
    if switch is None or switch >= epochs:
        return [(1, epochs) + first]
    phases = [(switch + 1, epochs) + lbfgs]
    if switch >= 1:
        phases.insert(0, (1, switch) + first)
    return phases


def cost_class(config, optimizer, mode, batch):
    """Hashable description of what one epoch of this phase costs per sample."""
    return (config["model"], bool(config.get("extra_conv")), bool(config.get("dropout")),
            bool(config.get("rotate") or config.get("augment")), optimizer, mode, int(batch),
            config.get("lbfgs_max_iter") or config.get("max_iter", 2),
            bool(config.get("momentum") or (config["optimizer"].get("momentum")
                                            if isinstance(config["optimizer"], dict) else 0)))


def relative_cost(cls):
    """(train, eval) cost per sample of a cost class, relative to the default ConvNet."""
    model, extra, dropout, rotate, optimizer, mode, batch, max_iter, momentum = cls
    r = RELATIVE
    layers = r["model"][model] + extra * r["extra_conv"] * r["model"][model]
    train = layers + dropout * r["dropout"] + rotate * r["rotate"]
    if optimizer == "lbfgs" and mode == "batch":
        train *= (1 + r["lbfgs_batch_evals_per_iter"] * max_iter) * _batch_factor(batch)
    else:
        opt = r["optimizer"][optimizer] + (momentum and optimizer == "sgd") * r["momentum"]
        train *= opt * _batch_factor(batch)
    return train, layers * r["eval"]


def _sizes(config):
    size = config["data"]["size"]
    if size == "full":
        return 60000, 10000
    if size == "small":
        return 6000, 1000
    return int(size[0]), int(size[1])


def _epoch_units(config, cls):
    n_train, n_test = _sizes(config)
    train, evaluate = relative_cost(cls)
    return n_train * train + n_test * evaluate


def format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Estimator:
    """Seconds per epoch of runs, from what the output folder holds and a calibration.

    Parameters
    ----------
    runs : list of Run
        Every declared run of the matrix (finished ones are the measurements).
    out : str
        The matrix folder.
    threads : int
        Threads per run. Not used for the costs, which are one thread's (see the module
        docstring); kept so that callers state what the runs will use.
    calibrate : callable, optional
        ``calibrate(threads) -> seconds per unit sample``, called with 1; default
        :func:`quick_calibration`.
    """

    def __init__(self, runs, out, threads=1, calibrate=None):
        self.measured = {}      # cost class -> [seconds per unit], most recent runs only
        self.done = {}          # run key -> epochs stored when the estimate was made
        stored = {}             # cost class -> [(recency, run key, seconds per unit)]
        for run in runs:
            recency = self._recency(run, out)
            for phase, seconds in self._stored_epochs(run, out):
                stored.setdefault(phase, []).append((recency, run.key, seconds))
        for phase, rows in stored.items():
            self.measured[phase] = self._latest(rows, RECENT_RUNS)
        self.source = "stored"
        if self.measured:
            rows = [row for values in stored.values() for row in values]
            per_unit = sorted(self._latest(rows, RECENT_RUNS_ANY_CLASS))
            self.unit = per_unit[len(per_unit) // 2]
        else:
            self.source = "measured now"
            # One thread, whatever the runs will use: see the module docstring.
            self.unit = (calibrate or quick_calibration)(1)

    @staticmethod
    def _recency(run, out):
        """Sort key of when ``run``'s stored epochs were measured: its finishing time, and
        newest of all for a run under way (its epochs are from the latest sitting)."""
        final = RunDir(out, run.key).final
        if final and final.get("finished_at"):
            return final["finished_at"]
        return "~"      # sorts after every ISO timestamp

    @staticmethod
    def _latest(rows, n_runs):
        """The seconds of the epochs of the ``n_runs`` most recent runs among ``rows``."""
        newest = sorted({(recency, key) for recency, key, _ in rows}, reverse=True)[:n_runs]
        keep = {key for _, key in newest}
        return [seconds for _, key, seconds in rows if key in keep]

    @staticmethod
    def _stored_epochs(run, out):
        """(cost class, seconds per unit) of every stored epoch of ``run``."""
        history = RunDir(out, run.key).metrics
        phases = _phases(run.config)
        for row in history:
            seconds = row.get("seconds", 0.0) + row.get("test_seconds", 0.0)
            for lo, hi, opt, mode, batch in phases:
                if lo <= row["epoch"] <= hi and seconds > 0:
                    cls = cost_class(run.config, opt, mode, batch)
                    yield cls, seconds / _epoch_units(run.config, cls)

    def epoch_seconds(self, config, epoch):
        """Estimated seconds of epoch ``epoch`` of a run of ``config``."""
        for lo, hi, opt, mode, batch in _phases(config):
            if lo <= epoch <= hi:
                cls = cost_class(config, opt, mode, batch)
                values = self.measured.get(cls)
                unit = sorted(values)[len(values) // 2] if values else self.unit
                return unit * _epoch_units(config, cls)
        return 0.0

    def run_seconds(self, config, first_epoch=1):
        """Estimated seconds of a run from ``first_epoch`` on, its start-up included."""
        return RUN_OVERHEAD.get(config["data"]["source"], 5.0) + sum(
            self.epoch_seconds(config, e) for e in range(first_epoch, config["epochs"] + 1))

    def longest_first(self, tasks, done_epochs=None):
        """``tasks`` reordered to resume the runs under way first, then to start the longest
        remaining run first, a branching run never before its parent (when the parent is
        among the tasks).

        On J slots, longest-first list scheduling ends within 4/3 of the best possible
        makespan, where the declaration order can leave one slot running a long run alone
        at the end of a sitting; it also starts the runs that matter most for a sitting's
        budget (a 30-epoch run cannot wait for the last hour).
        """
        done_epochs = done_epochs or {}

        def remaining(run):
            first = done_epochs.get(run.key, 0) + 1
            if run.branch is not None and first == 1:
                first = run.branch[1] + 1
            return self.run_seconds(run.config, first)

        # Runs already under way first (a rerun resumes what it started, and a short rest
        # fits a sitting's budget best), then the rest longest first.
        order = sorted(tasks, key=lambda run: (done_epochs.get(run.key, 0) > 0,
                                               remaining(run)), reverse=True)
        keys = {run.key for run in tasks}
        placed, out = set(), []
        pending = list(order)
        while pending:
            for i, run in enumerate(pending):
                parent = run.branch[0].key if run.branch is not None else None
                if parent is None or parent not in keys or parent in placed:
                    out.append(pending.pop(i))
                    placed.add(run.key)
                    break
            else:   # a parent missing from the ordering cannot happen; keep the rest as given
                out += pending
                break
        return out

    def wall_seconds(self, tasks, jobs, done_epochs=None):
        """Wall time of ``tasks`` (in start order) on ``jobs`` slots.

        ``tasks`` are :class:`bench.experiments.Run`; ``done_epochs`` maps a run key to the
        epochs it already has (stored, or copied from its parent when it branches).
        """
        done_epochs = done_epochs or {}
        slots = [0.0] * max(1, jobs)
        ready_at = {}            # (key, epoch) -> time that epoch is done
        for run in tasks:
            start_epoch = done_epochs.get(run.key, 0) + 1
            earliest = 0.0
            if run.branch is not None and start_epoch == 1:
                parent, epoch = run.branch
                start_epoch = epoch + 1
                earliest = ready_at.get((parent.key, epoch), 0.0)
            i = min(range(len(slots)), key=slots.__getitem__)
            t = max(slots[i], earliest) + RUN_OVERHEAD.get(run.config["data"]["source"], 5.0)
            for e in range(start_epoch, run.config["epochs"] + 1):
                t += self.epoch_seconds(run.config, e)
                ready_at[(run.key, e)] = t
            slots[i] = t
        return max(slots)


def quick_calibration(threads, samples=256):
    """Seconds per unit sample on this machine now: train the default ConvNet briefly."""
    import numpy as np

    import fastconv
    from fastconv.datasets import load_mnist_sample
    from fastconv.nn import build_model
    from fastconv.train import Trainer

    previous = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        data = load_mnist_sample(size=(samples, 1), dtype=np.float32)
        trainer = Trainer(build_model("convnet", dtype=np.float32, seed=1), progress=False,
                          verbose=False)
        trainer.fit(data.train_x[:32], data.train_y[:32], epochs=1)   # warm up: buffers
        start = time.perf_counter()
        trainer.fit(data.train_x, data.train_y, epochs=2)
        return (time.perf_counter() - start) / samples
    finally:
        fastconv.set_num_threads(previous)
