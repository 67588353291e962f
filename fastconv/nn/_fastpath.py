"""The hot path of a layer: call the compiled kernel directly once a call has been validated.

``fastconv.functional`` validates every argument on every call. Inside a training loop a
layer sees the same shapes, dtype and parameter arrays step after step, and those checks cost
several microseconds per call: about a tenth of a batch-1 training step of the homework's
ConvNet. A layer therefore remembers the signature of its last validated call (a "plan") and,
while each array still matches it exactly (ndarray, shape, dtype, C-contiguous), calls the
kernel itself. Anything else - a new batch size, a view, another dtype, a replaced parameter -
goes through the validating function again, so a kernel never sees an argument the
validation would have refused.
"""
# ready(a, shape, dtype): True when ``a`` can go straight to a kernel expecting this
# C-contiguous array (an exact ndarray of that shape and numpy dtype); compiled, because it
# runs for every array of every layer call.
from .._kernels._fastcheck import ready
from .._threads import effective_n_threads

__all__ = ["ready", "threads", "enabled", "set_enabled"]

_ENABLED = True


def enabled():
    return _ENABLED


def set_enabled(flag):
    """Turn the fast path on or off (tests and benchmarks compare both paths)."""
    global _ENABLED
    _ENABLED = bool(flag)


threads = effective_n_threads
