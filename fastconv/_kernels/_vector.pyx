"""Whole-vector updates of the flat parameter and gradient vectors.

Design: y += alpha x (an SGD step) and y = 0 (zero_grad) over vectors of a few hundred
thousand elements, once per training step. They are memory-bound; at batch 1 they take about
a sixth of a step on one core, and the second core's bandwidth halves that. Work is cut into
fixed contiguous chunks, one per thread (static schedule), so results do not depend on the
thread count: every element is computed by the same expression whichever thread runs it.
Vectors below _PARALLEL_MIN elements stay on one thread.
"""
from cython.parallel cimport prange

from ._types cimport real_t
from ._trace cimport unit_begin, unit_end

cdef Py_ssize_t _PARALLEL_MIN = 1 << 16


# A call with ``share`` true is one thread's share of a divisible region (see _trace.pxd):
# elementwise, so however the vector is cut the bits are the same. A vector below
# _PARALLEL_MIN runs serially and is not a region.

cdef inline void _axpy_range(real_t alpha, const real_t* x, real_t* y,
                             Py_ssize_t lo, Py_ssize_t hi, bint share) noexcept nogil:
    cdef Py_ssize_t i
    cdef double t0 = unit_begin() if share else 0
    for i in range(lo, hi):
        y[i] += alpha * x[i]
    unit_end(b"axpy", 0, 0, t0)


cdef inline void _zero_range(real_t* y, Py_ssize_t lo, Py_ssize_t hi,
                             bint share) noexcept nogil:
    cdef Py_ssize_t i
    cdef double t0 = unit_begin() if share else 0
    for i in range(lo, hi):
        y[i] = 0
    unit_end(b"zero", 0, 0, t0)


def axpy(double alpha,
         const real_t[::1] x,     # IN
         real_t[::1] y,           # IN/OUT, same length
         int n_threads):
    """y += alpha * x."""
    cdef Py_ssize_t n = y.shape[0]
    cdef int t, T = n_threads if n >= _PARALLEL_MIN else 1
    cdef real_t a = <real_t>alpha
    if n == 0:
        return
    with nogil:
        if T == 1:
            _axpy_range(a, &x[0], &y[0], 0, n, n >= _PARALLEL_MIN)
        else:
            for t in prange(T, num_threads=T, schedule="static", chunksize=1):
                _axpy_range(a, &x[0], &y[0], n * t // T, n * (t + 1) // T, True)


def zero(real_t[::1] y,           # OUT
         int n_threads):
    """y = 0."""
    cdef Py_ssize_t n = y.shape[0]
    cdef int t, T = n_threads if n >= _PARALLEL_MIN else 1
    if n == 0:
        return
    with nogil:
        if T == 1:
            _zero_range(&y[0], 0, n, n >= _PARALLEL_MIN)
        else:
            for t in prange(T, num_threads=T, schedule="static", chunksize=1):
                _zero_range(&y[0], n * t // T, n * (t + 1) // T, True)
