"""The fast path's argument check, compiled: is this exactly the array a kernel expects?

``fastconv.nn._fastpath.ready`` runs about forty times per training step (every array of
every layer call); written in Python it costs a few tenths of a microsecond each, about 2%
of a batch-1 step. Here it reads the array struct directly.
"""
cimport numpy as cnp

cnp.import_array()


def ready(object a, tuple shape, cnp.dtype dtype):
    """True when ``a`` is an ndarray (exactly, not a subclass) of this shape and dtype,
    C-contiguous. ``shape`` is a tuple of ints, ``dtype`` a numpy dtype."""
    cdef cnp.ndarray arr
    cdef Py_ssize_t i, ndim
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    ndim = cnp.PyArray_NDIM(arr)
    if ndim != len(shape) or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    for i in range(ndim):
        if cnp.PyArray_DIM(arr, i) != <Py_ssize_t>shape[i]:
            return False
    if <void*>cnp.PyArray_DESCR(arr) != <void*>dtype:
        # Equal dtypes need not be the same object (a descr from a buffer or a pickle).
        return a.dtype == dtype
    return True
