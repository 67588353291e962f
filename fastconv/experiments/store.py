"""On-disk state of the experiment matrix: one folder per run, every write atomic.

Layout under the output folder (``bench/results/<preset>/`` by default)::

    runs/<key>/config.json     the run's canonical config (written before training starts)
    runs/<key>/metrics.csv     one row per finished epoch, rewritten after every epoch
    runs/<key>/checkpoint.npz  the trainer's checkpoint (resume point), model.npz, *.log
    runs/<key>/checkpoint-epoch<k>.npz
                               the checkpoint after epoch k, kept for runs branching there
    runs/<key>/final.json      written last: status "ok" | "failed" | "diverged"
    runs/<key>/.lock           flock()ed by the process training the run

A file that exists but cannot be read as what it should hold (a disk error, a hand edit, a
copy cut short) is *damaged*: :meth:`RunDir.damaged` names it and the problem, the run's
status is ``"damaged"``, the readers treat it as absent, and the next process to take the
run's lock sets it aside as ``<name>.damaged`` and restores it (from final.json, the config
or the run's checkpoint) or trains the run again.

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

from fastconv._errors import PathError, environmental_error
from fastconv.serialization import atomic_write_text  # noqa: F401  (re-exported)

__all__ = ["canonical_json", "config_key", "atomic_write_text", "write_json", "read_json",
           "write_metrics", "read_metrics", "RunDir", "METRIC_COLUMNS", "FINISHED", "RunLock",
           "DamagedRunFile", "RUN_FILES", "environmental_error"]

METRIC_COLUMNS = ["epoch", "loss", "accuracy", "mean_class_accuracy", "seconds",
                  "test_loss", "test_accuracy", "test_mean_class_accuracy", "test_seconds",
                  "val_loss", "val_accuracy", "val_mean_class_accuracy", "val_seconds", "lr"]
# Statuses a final.json may hold; any of them means "do not run again" unless retrying.
FINISHED = ("ok", "failed", "diverged")
# The files of a run folder checked for damage here; a damaged checkpoint shows when the run
# resumes from it (train_run sets it aside and trains the run from scratch).
RUN_FILES = ("config.json", "metrics.csv", "final.json")


class DamagedRunFile(PathError):
    """A run file that exists but does not hold what it should (``path``, ``problem``)."""

    what = "run file "


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
    """Parsed JSON of ``path``, or None if it does not exist.

    Raises
    ------
    DamagedRunFile
        The file is not valid UTF-8 JSON.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DamagedRunFile(path, f"is not valid JSON ({type(exc).__name__}: "
                                   f"{str(exc)[:100]})") from None


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
    """Rows of a metrics.csv as dicts of floats (``epoch`` as int); [] if missing.

    Raises
    ------
    DamagedRunFile
        The file is not a metrics.csv: no header of :data:`METRIC_COLUMNS`, a row of the
        wrong length or with a value that is not a number, epochs other than 1, 2, ...
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = list(reader)
    except FileNotFoundError:
        return []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DamagedRunFile(path, f"is not a CSV file ({type(exc).__name__})") from None
    if not header or "epoch" not in header or not set(header) <= set(METRIC_COLUMNS) \
            or len(set(header)) != len(header):
        raise DamagedRunFile(path, f"has no header of metric columns (got "
                                   f"{','.join(header or [])[:80]!r})")
    out = []
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DamagedRunFile(path, f"line {line} has {len(row)} fields, the header "
                                       f"{len(header)}")
        try:
            parsed = {k: float(v) for k, v in zip(header, row) if v != ""}
        except ValueError:
            raise DamagedRunFile(path, f"line {line} holds a value that is not a "
                                       f"number") from None
        epoch = parsed.get("epoch")
        if epoch != len(out) + 1:
            raise DamagedRunFile(path, f"line {line} is epoch {row[header.index('epoch')]!r}; "
                                       f"expected {len(out) + 1}")
        parsed["epoch"] = int(epoch)
        out.append(parsed)
    return out


def _check_history(history):
    """The problem with a final.json's ``history``, or None."""
    if not isinstance(history, list):
        return "history is not a list"
    for i, row in enumerate(history):
        if not isinstance(row, dict) or row.get("epoch") != i + 1 \
                or isinstance(row.get("epoch"), bool):
            return f"history entry {i + 1} is not epoch {i + 1}"
        if not all(_is_number(row[k]) for k in METRIC_COLUMNS if row.get(k) is not None):
            return f"history entry {i + 1} holds a metric that is not a number"
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_final(final):
    """The problem with a parsed final.json, or None."""
    if not isinstance(final, dict):
        return f"holds a JSON {type(final).__name__}, not an object"
    if final.get("status") not in FINISHED:
        return f"status is {final.get('status')!r}, not one of {', '.join(FINISHED)}"
    problem = _check_history(final.get("history", []))
    if problem:
        return problem
    for key in ("accuracy", "test_accuracy", "best_test_accuracy", "train_seconds",
                "wall_seconds", "epochs_done"):
        if final.get(key) is not None and not _is_number(final[key]):
            return f"{key} is not a number"
    for key in ("error", "finished_at"):
        if final.get(key) is not None and not isinstance(final[key], str):
            return f"{key} is not a string"
    branched = final.get("branched_from")
    if branched is not None and not (isinstance(branched, dict)
                                     and isinstance(branched.get("epoch"), int)
                                     and isinstance(branched.get("key"), str)):
        return "branched_from is not a run key and an epoch"
    return None


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
        # Read-only: listing a matrix on a read-only disk must work (flock needs no write).
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
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
        """Path of the run file ``name``."""
        return os.path.join(self.path, name)

    def _read(self, name):
        """``(content, problem)`` of a run file: (None, None) if absent, (None, problem)
        if damaged."""
        path = self.file(name)
        try:
            if name == "metrics.csv":
                rows = read_metrics(path)
                final = self._read("final.json")[0] if os.path.exists(path) else None
                if final is not None and "history" in final \
                        and len(final["history"]) != len(rows):
                    # Both are written from one history: a difference is a cut file.
                    return None, (f"holds {len(rows)} epochs where final.json records "
                                  f"{len(final['history'])}")
                return rows, None
            content = read_json(path)
        except DamagedRunFile as exc:
            return None, exc.problem
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            return None, f"cannot be read ({exc.strerror})"
        if content is None:
            return None, None
        if name == "final.json":
            return (None, problem) if (problem := _check_final(content)) else (content, None)
        if not isinstance(content, dict):
            return None, f"holds a JSON {type(content).__name__}, not an object"
        try:
            key = config_key(content)
        except (TypeError, ValueError):
            key = None
        if key != self.key:
            return None, "holds the config of another run (its hash is not the folder's name)"
        return content, None

    @property
    def config(self):
        """config.json, or None if absent or damaged."""
        return self._read("config.json")[0]

    @property
    def final(self):
        """final.json, or None if absent or damaged."""
        return self._read("final.json")[0]

    @property
    def metrics(self):
        """metrics.csv's rows (:func:`read_metrics`), or [] if absent or damaged."""
        return self._read("metrics.csv")[0] or []

    def damaged(self):
        """``[(file name, problem)]`` of the run's files that exist but are damaged."""
        return [(name, problem) for name in RUN_FILES
                if (problem := self._read(name)[1]) is not None]

    def set_aside_damaged(self):
        """Rename every damaged run file to ``<name>.damaged`` (replacing an older one), so
        that it is rebuilt while its bytes stay for a look; return the names moved."""
        moved = []
        for name, _ in self.damaged():
            os.replace(self.file(name), self.file(name + ".damaged"))
            moved.append(name)
        return moved

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
        """``"ok"``, ``"failed"``, ``"diverged"``, ``"running"``, ``"partial"``,
        ``"pending"`` or ``"damaged"``.

        ``running`` means a live process holds the run's lock; ``partial`` that some epochs
        are stored but nobody is working on it (an interrupted run, resumable); ``damaged``
        that one of its files is (:meth:`damaged`; a rerun repairs or retrains it).
        """
        if self.damaged():
            return "damaged"
        final = self.final
        if final is not None:
            return final["status"]
        if RunLock(self.path).held_elsewhere():
            return "running"
        return "partial" if self.metrics else "pending"
