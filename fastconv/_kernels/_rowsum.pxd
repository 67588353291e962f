# Row sums in a fixed order, inlined into each kernel that sums a bias gradient.
from ._types cimport real_t


cdef inline void add_row_sums(const real_t* a, int rows, Py_ssize_t cols, Py_ssize_t lda,
                              real_t* out) noexcept nogil:
    """out[i] += sum(a[i, :cols]), a row-major with row stride lda.

    Sixteen independent partial sums let the compiler vectorize without reassociating
    (fastconv builds without -ffast-math); they are combined in a fixed order.
    """
    cdef real_t acc[16]
    cdef real_t s
    cdef const real_t* row
    cdef Py_ssize_t i, j, l
    for i in range(rows):
        row = a + i * lda
        for l in range(16):
            acc[l] = 0
        j = 0
        while j + 16 <= cols:
            for l in range(16):
                acc[l] += row[j + l]
            j += 16
        s = 0
        for l in range(16):
            s += acc[l]
        while j < cols:
            s += row[j]
            j += 1
        out[i] += s
