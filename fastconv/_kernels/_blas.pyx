"""Test twin of the inline GEMM in ``_blas.pxd`` (used only by tests/test_blas.py)."""
import numpy as np
from ._types cimport real_t
from ._blas cimport gemm_rm


def gemm_memview(bint trans_a, bint trans_b, double alpha,
                 const real_t[:, ::1] a,      # IN
                 const real_t[:, ::1] b,      # IN
                 double beta,
                 real_t[:, ::1] c):           # IN/OUT
    """c := alpha * op(a) @ op(b) + beta * c (shapes checked by the caller)."""
    cdef int m = c.shape[0]
    cdef int n = c.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef const real_t* pa = &a[0, 0] if a.shape[0] * a.shape[1] > 0 else NULL
    cdef const real_t* pb = &b[0, 0] if b.shape[0] * b.shape[1] > 0 else NULL
    cdef real_t* pc = &c[0, 0] if m * n > 0 else NULL
    with nogil:
        gemm_rm(trans_a, trans_b, m, n, k, <real_t>alpha, pa, max(1, a.shape[1]),
                pb, max(1, b.shape[1]), <real_t>beta, pc, max(1, n))
    return np.asarray(c)
