"""On-disk state of the experiment matrix: one folder per run, every write atomic.

Layout under the output folder (``bench/results/<preset>/`` by default)::

    runs/<key>/config.json     the run's canonical config (written before training starts)
    runs/<key>/metrics.csv     one row per finished epoch, rewritten after every epoch
    runs/<key>/checkpoint.npz  the trainer's checkpoint (resume point), model.npz, *.log
    runs/<key>/checkpoint-epoch<k>.npz
                               the checkpoint after epoch k, kept for runs branching there
    runs/<key>/final.json      written last: status "ok" | "failed" | "diverged"
    runs/<key>/.lock           flock()ed by the process training the run

A run's key is a hash of its canonical config, so identical runs declared by two families are
trained once, and changing any setting gives a new run instead of mixing results. The status of
a run is read from these files alone: the driver keeps no state of its own, which is what lets
any process be killed at any point and the next invocation carry on.
"""
import csv
import fcntl
import hashlib
import io
import json
import os

from fastconv.serialization import atomic_write_text  # noqa: F401  (re-exported)

__all__ = ["canonical_json", "config_key", "atomic_write_text", "write_json", "read_json",
           "write_metrics", "read_metrics", "RunDir", "METRIC_COLUMNS", "FINISHED", "RunLock"]

METRIC_COLUMNS = ["epoch", "loss", "accuracy", "mean_class_accuracy", "seconds",
                  "test_loss", "test_accuracy", "test_mean_class_accuracy", "test_seconds"]
# Statuses a final.json may hold; any of them means "do not run again" unless retrying.
FINISHED = ("ok", "failed", "diverged")


def canonical_json(config):
    """Serialize ``config`` so that equal configs give equal bytes.

    Keys are sorted and floats are written by ``repr`` (shortest round-trip form), so
    ``1e-3`` and ``0.001`` hash the same; tuples become lists.
    """
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_key(config):
    """The run's key: the first 16 hex digits of the sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default)
                      + "\n")


def read_json(path):
    """Parsed JSON of ``path``, or None if it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _json_default(obj):
    # NumPy scalars reach us from training histories; anything else is a bug worth seeing.
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def write_metrics(path, history):
    """Write the per-epoch ``history`` (list of dicts) as CSV with :data:`METRIC_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path):
    """Rows of a metrics.csv as dicts of floats (``epoch`` as int); [] if missing."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    out = []
    for row in rows:
        parsed = {}
        for k, v in row.items():
            if v in ("", None):
                continue
            parsed[k] = int(float(v)) if k == "epoch" else float(v)
        out.append(parsed)
    return out


class RunLock:
    """Exclusive, non-blocking ``flock`` on a run folder's ``.lock`` file.

    The kernel drops the lock when its holder dies, however it dies, so a lock can never be
    left stale by a killed process: a held lock always means a live process is training.
    """

    def __init__(self, folder):
        self.path = os.path.join(folder, ".lock")
        self._fd = None

    def acquire(self):
        """Take the lock; return False (without blocking) if another process holds it."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def held_elsewhere(self):
        """True if some other process holds the lock right now."""
        if not os.path.exists(self.path):
            return False
        if not self.acquire():
            return True
        self.release()
        return False


class RunDir:
    """The files of one run under ``<out>/runs/<key>/``.

    Parameters
    ----------
    out : str
        The matrix's output folder.
    key : str
        The run's config key (:func:`config_key`).
    """

    def __init__(self, out, key):
        self.key = key
        self.path = os.path.join(os.fspath(out), "runs", key)

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def config(self):
        return read_json(self.file("config.json"))

    @property
    def final(self):
        return read_json(self.file("final.json"))

    @property
    def metrics(self):
        return read_metrics(self.file("metrics.csv"))

    def snapshot(self, epoch):
        """Path of the checkpoint kept after ``epoch`` for branching runs."""
        return self.file(f"checkpoint-epoch{int(epoch)}.npz")

    def write_config(self, config):
        """Write config.json, or check that the one on disk is the same config."""
        existing = self.config
        if existing is not None:
            if canonical_json(existing) != canonical_json(config):
                raise RuntimeError(f"{self.file('config.json')} holds a different config than "
                                   f"the run keyed {self.key}; refusing to mix results")
            return
        write_json(self.file("config.json"), config)

    def status(self):
        """``"ok"``, ``"failed"``, ``"diverged"``, ``"running"``, ``"partial"`` or ``"pending"``.

        ``running`` means a live process holds the run's lock; ``partial`` that some epochs
        are stored but nobody is working on it (an interrupted run, resumable).
        """
        final = self.final
        if final is not None:
            return final.get("status", "failed")
        if RunLock(self.path).held_elsewhere():
            return "running"
        return "partial" if self.metrics else "pending"
