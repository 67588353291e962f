"""Experiment runs as installable task code: config -> train -> record.

What one run of an experiment matrix executes lives here, in the installed package, so that
any environment with fastconv installed (a Dask worker on another machine, with no copy of the
repository and no shared disk) can execute it. ``bench/run_all.py`` declares the matrix and
schedules the runs; this package trains one and records it.

* :mod:`fastconv.experiments.store`: the on-disk state of a matrix (one folder per run,
  atomic writes, run locks, run keys).
* :mod:`fastconv.experiments.worker`: :func:`execute_run` (lock, branch, train, record) and
  :func:`train_run`, the real training of a run's config with :class:`fastconv.Trainer`.
"""
from .store import (FINISHED, METRIC_COLUMNS, DamagedRunFile, RunDir, RunLock, canonical_json,
                    config_key, read_json, read_metrics, write_json, write_metrics)
from .worker import (BRANCH_KEYS, DEFAULT_TRAIN_FN, branch_compatible, execute_run,
                     load_data, run_task, train_run, write_returned_files)

__all__ = ["execute_run", "train_run", "run_task", "load_data", "branch_compatible",
           "write_returned_files", "BRANCH_KEYS", "DEFAULT_TRAIN_FN", "RunDir", "RunLock",
           "config_key", "canonical_json", "read_json", "write_json", "read_metrics",
           "write_metrics", "METRIC_COLUMNS", "FINISHED", "DamagedRunFile"]
