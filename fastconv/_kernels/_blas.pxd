# Row-major GEMM over SciPy's BLAS (scipy.linalg.cython_blas), inlined into each kernel.
#
# BLAS is column-major. A row-major matrix is the column-major transpose, so the row-major
# product C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: swap the
# operands and the m/n sizes, keep the transpose flags.
from scipy.linalg.cython_blas cimport sgemm, dgemm
from ._types cimport real_t


cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k,
                         real_t alpha, const real_t* a, int lda,
                         const real_t* b, int ldb,
                         real_t beta, real_t* c, int ldc) noexcept nogil:
    """C[m, n] := alpha * op(A)[m, k] @ op(B)[k, n] + beta * C, all row-major.

    lda, ldb, ldc are row strides in elements (the stored row length of each matrix).
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # BLAS would also do this, but rejects lda < 1 for an empty operand.
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if real_t is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)
