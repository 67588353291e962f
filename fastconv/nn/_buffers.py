"""Output arrays that a training layer hands out again once nobody else holds them.

A training step allocates every activation and every gradient afresh. At batch 32 that is
tens of megabytes per step, and glibc's allocator gives the freed memory back to the kernel
at the end of the step (heap trimming) and takes it again, page by page, in the next one:
about 900 minor page faults per step of the max-pool benchmark model and 15-20% of the step
spent in the kernel (``getrusage``, 2 threads, batch 32). Torch7's layers avoid it by
owning their output buffers and overwriting them on every call, which silently changes
arrays a caller may still hold.

A :class:`BufferPool` keeps the arrays it gave out and reuses one only when its reference
count shows that the pool alone refers to it: no caller, no layer cache and no view (a view
holds a reference to its base) can see the reuse. Arrays under ``MIN_BYTES`` are not kept:
small allocations are served from glibc's free lists without page faults anyway.
"""
import sys

import numpy as np

__all__ = ["BufferPool", "MIN_BYTES", "CAPACITY"]

MIN_BYTES = 1 << 16
CAPACITY = 4


def _free_count():
    """sys.getrefcount of an array that only its list refers to, seen from a ``for a in
    arrays`` loop (the list, the loop variable, the call's argument): measured with the
    same construct as :meth:`BufferPool.empty`, not assumed, since it depends on the
    interpreter."""
    arrays = [np.empty(1)]
    for a in arrays:
        return sys.getrefcount(a)


_FREE = _free_count()


class BufferPool:
    """Up to ``CAPACITY`` recycled arrays of one layer."""

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = []

    def empty(self, shape, dtype):
        """An uninitialized array of this shape and dtype that no one else holds."""
        arrays = self._arrays
        getrefcount = sys.getrefcount
        for a in arrays:
            if getrefcount(a) == _FREE and a.shape == shape and a.dtype == dtype:
                return a
        a = None
        new = np.empty(shape, dtype=dtype)
        if new.nbytes >= MIN_BYTES:
            if len(arrays) < CAPACITY:
                arrays.append(new)
            else:
                # Make room by dropping an unused array (one of an old shape, say); when all
                # are in use the new one simply is not kept.
                i = 0
                for a in arrays:
                    if getrefcount(a) == _FREE:
                        arrays[i] = new
                        break
                    i += 1
        return new

    def clear(self):
        self._arrays = []

    def __len__(self):
        return len(self._arrays)
