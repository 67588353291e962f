"""Per-unit wall times of the kernels' parallel regions, for the scaling model.

A trace is a fixed-size record buffer: ``start(capacity)`` turns it on, every unit of every
parallel region then adds (region, unit, n_units, seconds) with one atomic increment, and
``stop()`` returns the records and turns it off. Records past the capacity are counted, not
kept. The kernels call unit_begin/unit_end (see _trace.pxd) whether or not a trace is on;
off, unit_begin costs a load and a branch and unit_end returns at once.
"""
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from *:
    """
    static long fc_trace_claim(long* counter) {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    long fc_trace_claim(long* counter) noexcept nogil


cdef struct Record:
    const char* region
    int unit
    int n_units
    double seconds


cdef int _on = 0
cdef Record* _records = NULL
cdef long _capacity = 0
cdef long _count = 0


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef bint trace_active() noexcept nogil:
    return _on != 0


cdef double unit_begin() noexcept nogil:
    if not _on:
        return 0
    return _now()


cdef void unit_end(const char* region, int unit, int n_units, double t0) noexcept nogil:
    cdef long i
    if t0 == 0 or not _on:
        return
    i = fc_trace_claim(&_count)
    if i < _capacity:
        _records[i].region = region
        _records[i].unit = unit
        _records[i].n_units = n_units
        _records[i].seconds = _now() - t0


def start(long capacity=1 << 20):
    """Turn tracing on with room for ``capacity`` unit records (the previous trace, if any,
    is dropped)."""
    global _on, _records, _capacity, _count
    if capacity < 1:
        raise ValueError(f"start: capacity must be >= 1; got {capacity}")
    _on = 0
    free(_records)
    _records = <Record*>malloc(capacity * sizeof(Record))
    if _records == NULL:
        _capacity = 0
        raise MemoryError(f"start: cannot allocate {capacity} trace records")
    _capacity = capacity
    _count = 0
    _on = 1


def stop():
    """Turn tracing off; return ``(records, dropped)``: a list of
    ``(region, unit, n_units, seconds)`` in the order the units finished, and the number of
    records that did not fit."""
    global _on, _records, _capacity, _count
    cdef long i, n
    _on = 0
    n = min(_count, _capacity)
    out = [(_records[i].region.decode(), _records[i].unit, _records[i].n_units,
            _records[i].seconds) for i in range(n)]
    dropped = max(0, _count - _capacity)
    free(_records)
    _records = NULL
    _capacity = 0
    _count = 0
    return out, dropped


cdef int _sink[64]


cdef void _touch(int t) noexcept nogil:
    _sink[t & 63] += 1


def fork_join_seconds(int n_threads, int repeats=2000):
    """Mean wall time of an almost empty parallel region on ``n_threads`` threads: the cost
    of opening and joining a team, which every parallel region of a step pays once."""
    cdef int r, t
    cdef double t0
    if n_threads < 1 or repeats < 1:
        raise ValueError(f"fork_join_seconds: n_threads and repeats must be >= 1; got "
                         f"{n_threads}, {repeats}")
    t0 = _now()
    with nogil:
        for r in range(repeats):
            for t in prange(n_threads, num_threads=n_threads, schedule="static", chunksize=1):
                _touch(t)
    return (_now() - t0) / repeats
