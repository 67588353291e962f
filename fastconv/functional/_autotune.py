"""Convolution algorithms chosen by measurement: ``set_conv_algorithm("benchmark")``.

The first time a layer shape needs a choice, each algorithm that applies is timed on random
data of that shape (alternating, medians of a few calls, on the current thread count) and the
fastest is kept, as cuDNN's benchmark mode does. Unlike cuDNN's, the choice is also written to
a cache file (``$FASTCONV_CONV_CACHE``, else ``$XDG_CACHE_HOME/fastconv/conv_algorithms.json``
or ``~/.cache/fastconv/conv_algorithms.json``), keyed by the CPU, the kernels' ISA level and
the shapes: later processes on the same machine read the same choice instead of measuring
again, so a resumed run and a run on another thread count compute the same bits as the first.
A damaged or unwritable cache file costs a measurement, never a failure.
"""
import json
import os
import time
import warnings

import numpy as np

from .._cpuload import cpu_model
from .._kernels import ISA_LEVEL

__all__ = ["cache_path", "choose", "forget"]

# Timed calls per algorithm, alternating; the median decides.
_ROUNDS = 5

_cache = {}         # key -> algorithm, this process's view of the file
_loaded = [None]    # the path whose file _cache holds
_warned = [False]


def cache_path():
    """The file that keeps the measured choices (see the module notes)."""
    path = os.environ.get("FASTCONV_CONV_CACHE", "")
    if path:
        return path
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastconv", "conv_algorithms.json")


def _load(path):
    if _loaded[0] == path:
        return
    _cache.clear()
    _loaded[0] = path
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return
    if isinstance(data, dict):
        _cache.update({k: v for k, v in data.items()
                       if isinstance(k, str) and isinstance(v, str)})


def _save(path):
    from ..serialization import atomic_write_text   # (serialization imports the layers)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write_text(path, json.dumps(_cache, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        if not _warned[0]:
            _warned[0] = True
            warnings.warn(f"fastconv: cannot write the convolution algorithm cache {path} "
                          f"({exc.strerror or exc}); choices are kept for this process only "
                          f"(set FASTCONV_CONV_CACHE to a writable file)", RuntimeWarning,
                          stacklevel=3)


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def choose(kind, shapes, names, make):
    """The fastest of the algorithms ``names`` for a pass ``kind`` of these ``shapes``: from
    the cache when measured before, else measured now and cached. ``make()`` returns a dict
    name -> callable running that algorithm once (called only to measure)."""
    path = cache_path()
    _load(path)
    key = "|".join([cpu_model(), ISA_LEVEL, kind, ",".join(map(str, shapes))])
    known = _cache.get(key)
    if known in names:
        return known
    candidates = make()
    for name in names:      # first calls allocate and fault pages in
        candidates[name]()
    times = {name: [] for name in names}
    for _ in range(_ROUNDS):
        for name in names:
            times[name].append(_seconds(candidates[name]))
    best = min(names, key=lambda name: (float(np.median(times[name])), names.index(name)))
    _cache[key] = best
    _save(path)
    return best


def forget():
    """Drop this process's view of the cache (the file stays); for tests."""
    _cache.clear()
    _loaded[0] = None
