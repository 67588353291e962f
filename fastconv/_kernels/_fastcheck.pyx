"""The layers' fast-path checks, compiled: a validated call's :class:`Plan` and ``ready``.

A layer's fast path runs for every call of a training step (about thirty per batch-1 step
of ~600 us), so the check that it may skip validation must cost a fraction of a
microsecond. Written in Python it costs a few tenths of a microsecond per array; here each
array costs a few pointer and integer compares read straight from its struct. What a plan
covers, and why that is enough, is explained in :mod:`fastconv.nn._fastpath`.
"""
cimport numpy as cnp
import numpy as np
from libc.string cimport memcmp

cnp.import_array()

cdef bint _enabled = True


def set_enabled(flag):
    """Turn every layer's fast path on or off (tests and benchmarks compare both)."""
    global _enabled
    _enabled = bool(flag)


def enabled():
    return _enabled


cdef inline bint _ready(object a, tuple shape, cnp.dtype dtype, bint write):
    cdef cnp.ndarray arr
    cdef Py_ssize_t i, ndim
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    ndim = cnp.PyArray_NDIM(arr)
    if ndim != len(shape) or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        return False
    for i in range(ndim):
        if cnp.PyArray_DIM(arr, i) != <Py_ssize_t>shape[i]:
            return False
    if <void*>cnp.PyArray_DESCR(arr) != <void*>dtype:
        # Equal dtypes need not be the same object (a descr from a buffer or a pickle).
        return a.dtype == dtype
    return True


def ready(object a, tuple shape, cnp.dtype dtype):
    """True when ``a`` is an ndarray (exactly, not a subclass) of this shape and dtype,
    C-contiguous. ``shape`` is a tuple of ints, ``dtype`` a numpy dtype."""
    return _ready(a, shape, dtype, False)


def writable_float(object a):
    """True when ``a`` is an exact ndarray, C-contiguous, writeable, float32 or float64:
    what an elementwise kernel may update in place."""
    cdef cnp.ndarray arr
    cdef int t
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    t = cnp.PyArray_TYPE(arr)
    return (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISWRITEABLE(arr)
            and (t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b):
    """Whether the bytes of two C-contiguous arrays overlap (exact for contiguous arrays)."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    cdef Py_ssize_t na = cnp.PyArray_NBYTES(a), nb = cnp.PyArray_NBYTES(b)
    return na > 0 and nb > 0 and a0 < b0 + nb and b0 < a0 + na


def tail_equal(cnp.ndarray a, cnp.ndarray copy):
    """True when the last ``copy.nbytes`` bytes of C-contiguous ``a`` equal ``copy``'s
    bytes (both C-contiguous; a is at least as large). Bytes, not values: NaN equals
    itself and -0.0 differs from 0.0, which is what "unchanged" means here."""
    cdef Py_ssize_t na = cnp.PyArray_NBYTES(a), nc = cnp.PyArray_NBYTES(copy)
    if not (cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_IS_C_CONTIGUOUS(copy)) or nc > na:
        return False
    return memcmp(<char*>cnp.PyArray_DATA(a) + (na - nc), cnp.PyArray_DATA(copy), nc) == 0


cdef object _UNTRUSTED = object()    # equal to nothing but itself


cdef object _frozen(object v):
    """v when it cannot change in place (so equality later means "unchanged"), else a value
    equal to nothing: a layer whose hyperparameter is, say, a list always validates."""
    if v is None or type(v) in (int, float, bool, str) or isinstance(v, (np.integer,
                                                                         np.floating)):
        return v
    if type(v) is tuple:
        for e in v:
            if _frozen(e) is _UNTRUSTED:
                return _UNTRUSTED
        return v
    return _UNTRUSTED


cdef class Plan:
    """What one validated call of a layer fixed; :meth:`admits` says whether a later call
    matches it in everything its kernels read or write.

    Parameters
    ----------
    layer : object
        The layer; its ``hyper_names`` attributes are recorded (immutable values only).
    threads : int
        The thread count of the validated call.
    inputs : tuple of ndarray
        Arrays a call passes anew (x, grad_out, kept buffers, labels): recorded by shape and
        dtype, which later calls must match exactly (C-contiguous).
    reads, writes : tuple of (ndarray or None)
        Parameter arrays the kernels read, and gradient buffers they write: recorded by
        identity (and shape, dtype, writeability), since validation checked these very
        objects.
    out_shape : tuple
        Shape of the result the layer allocates on the fast path.
    state : object
        Any other layer state the kernels depend on, compared by equality (e.g. the input
        shape a max-pooling backward scatters into).
    args : object
        Kernel arguments derived during validation (e.g. normalized stride and padding),
        for the fast path to pass on.
    """
    cdef readonly tuple hyper_names
    cdef readonly tuple hyper
    cdef readonly int threads
    cdef readonly tuple input_shapes
    cdef readonly tuple input_dtypes
    cdef readonly tuple reads
    cdef readonly tuple writes
    cdef tuple _read_shapes, _write_shapes, _read_dtypes, _write_dtypes
    cdef readonly tuple out_shape
    cdef readonly object dtype
    cdef readonly object state
    cdef readonly object args

    def __init__(self, layer, int threads, tuple inputs, tuple reads=(), tuple writes=(),
                 out_shape=(), state=None, args=None):
        self.hyper_names = tuple(getattr(type(layer), "hyper_names", ()))
        self.hyper = tuple(_frozen(getattr(layer, n)) for n in self.hyper_names)
        self.threads = threads
        self.input_shapes = tuple(a.shape for a in inputs)
        self.input_dtypes = tuple(a.dtype for a in inputs)
        self.reads, self.writes = reads, writes
        self._read_shapes = tuple(None if a is None else a.shape for a in reads)
        self._read_dtypes = tuple(None if a is None else a.dtype for a in reads)
        self._write_shapes = tuple(None if a is None else a.shape for a in writes)
        self._write_dtypes = tuple(None if a is None else a.dtype for a in writes)
        self.out_shape = tuple(out_shape)
        self.dtype = inputs[0].dtype if inputs else None
        self.state = state
        self.args = args

    cpdef bint admits(self, object layer, int threads, tuple inputs, tuple reads=(),
                      tuple writes=(), object state=None):
        """True when this call may go straight to the kernels: fast path on; the layer's
        hyperparameters, the thread count and ``state`` equal the validated call's; each
        input is an exact C-contiguous ndarray of the recorded shape and dtype; each read
        and written array is the very object validated (or None as then), still of its
        shape, dtype and contiguity, written ones still writeable; and no input or read
        array shares bytes with a written one."""
        cdef Py_ssize_t i, n
        cdef object a, b
        if not _enabled or threads != self.threads:
            return False
        n = len(self.hyper_names)
        for i in range(n):
            a = getattr(layer, <str>self.hyper_names[i])
            b = self.hyper[i]
            if a is not b and not (a == b):
                return False
        if self.state is not state and not (self.state == state):
            return False
        if len(inputs) != len(self.input_shapes) or len(reads) != len(self.reads) \
                or len(writes) != len(self.writes):
            return False
        for i in range(len(inputs)):
            if not _ready(inputs[i], <tuple>self.input_shapes[i],
                          <cnp.dtype>self.input_dtypes[i], False):
                return False
        if not _same_objects(reads, self.reads, self._read_shapes, self._read_dtypes, False) \
                or not _same_objects(writes, self.writes, self._write_shapes,
                                     self._write_dtypes, True):
            return False
        for i in range(len(writes)):
            a = writes[i]
            if a is not None and (_overlaps_any(inputs, len(inputs), a)
                                  or _overlaps_any(reads, len(reads), a)
                                  or _overlaps_any(writes, i, a)):
                return False
        return True


cdef inline bint _same_objects(tuple now, tuple then, tuple shapes, tuple dtypes, bint write):
    """Whether each array of ``now`` is the object of ``then`` (or both None), still of its
    recorded shape and dtype, C-contiguous and, when ``write``, writeable."""
    cdef Py_ssize_t i
    cdef object a
    for i in range(len(now)):
        a = now[i]
        if a is not then[i]:
            return False
        if a is not None and not _ready(a, <tuple>shapes[i], <cnp.dtype>dtypes[i], write):
            return False
    return True


cdef inline bint _overlaps_any(tuple arrays, Py_ssize_t n, object a):
    """Whether any of the first n arrays (None skipped; all C-contiguous ndarrays, checked
    by the caller) shares bytes with a."""
    cdef Py_ssize_t j
    cdef object b
    for j in range(n):
        b = arrays[j]
        if b is not None and _overlap(<cnp.ndarray>b, <cnp.ndarray>a):
            return True
    return False
