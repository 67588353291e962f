"""Fully connected layer: y = x @ weight^T + bias, weight (OUT, IN) in Torch's layout.

Design
------
(a) Ops, each one call into nogil code:
    linear_forward    y = x @ weight^T + bias                   one GEMM
    linear_backward   grad_x = grad_y @ weight                  one GEMM
                      grad_weight (+)= grad_y^T @ x             one GEMM
                      grad_bias (+)= column sums of grad_y
(b) Layout: row-major (N, IN) inputs, float32 or float64.
(c) Threading: OpenMP only (SciPy's BLAS is pinned to one thread by fastconv._threads).
    Results are bitwise identical for every thread count. OpenBLAS rounds an output element
    differently when a GEMM's M or N extent changes, so each GEMM's output is cut into a
    number of tiles fixed by the shapes alone (_n_tiles: by the work, at most _MAX_TILES,
    never by the thread count); threads only share out these tiles, and one thread runs the
    same tiles in order. A tile is a contiguous block along the output's longer side, of at
    least _MIN_SIDE rows or columns (a small output has fewer tiles than units, and the
    spare units do nothing), so the smaller operand is the one every tile reads again; no
    output element is written by two tiles and none is a sum of per-tile partials (K is
    never cut). grad_bias is cut by columns into the units and each column
    is summed over the batch in sample order.
    Small products are one tile: an OpenMP region, and each extra GEMM call, costs about as
    much as a few tens of thousands of multiply-adds (see _GRAIN).
"""
from cython.parallel cimport prange

from ._types cimport real_t
from ._blas cimport gemm_rm
from ._trace cimport unit_begin, unit_end


cdef enum:
    # Multiply-adds per tile below which cutting a GEMM does not pay for the parallel
    # region (about 1-2 microseconds to open and join on this project's 2-core machines).
    _GRAIN = 1 << 16
    # At most this many tiles: a power of two, so 1, 2, 4, ... threads get equal shares.
    # Cutting a layer's GEMMs finer costs more on 2 cores than it gains on 64 (measured on
    # the 1600 -> 128 layer at batch 32: 16 x 16 tiles ran 2-3x slower than 4): a linear
    # layer is a few percent of a convnet's step.
    _MAX_TILES = 16
    # A tile keeps at least this many rows or columns of the output: thinner GEMMs run far
    # below the library's speed.
    _MIN_SIDE = 32


cdef inline int _split(int total, int t, int n_parts) noexcept nogil:
    """Start of part t when [0, total) is cut into n_parts contiguous near-equal parts."""
    return <int>((<long long>total * t) // n_parts)


cdef int _n_tiles(long long work) noexcept nogil:
    """Tiles for ``work`` multiply-adds: the largest power of two <= work / _GRAIN, at most
    _MAX_TILES and at least 1. A function of the shapes only (see (c) above)."""
    cdef int u = 1
    while 2 * u <= _MAX_TILES and 2 * u * <long long>_GRAIN <= work:
        u *= 2
    return u


cdef void _block(int u, int U, int m, int n, int* r0, int* r1, int* c0,
                 int* c1) noexcept nogil:
    """Tile u of at most U over an (m, n) matrix, cut along its longer side into tiles of at
    least _MIN_SIDE rows or columns: [r0, r1) x [c0, c1), empty for u past the tiles."""
    cdef int side = m if m >= n else n
    cdef int tiles = max(1, min(U, side // _MIN_SIDE))
    r0[0], r1[0], c0[0], c1[0] = 0, m, 0, n
    if u >= tiles:
        r1[0] = 0
        c1[0] = 0
    elif m >= n:
        r0[0], r1[0] = _split(m, u, tiles), _split(m, u + 1, tiles)
    else:
        c0[0], c1[0] = _split(n, u, tiles), _split(n, u + 1, tiles)


cdef void _gemm_part(int u, int U, bint trans_a, bint trans_b, int m, int n, int k,
                     const real_t* a, int lda, const real_t* b, int ldb,
                     real_t beta, real_t* c, int ldc) noexcept nogil:
    """Tile u of U (see _block) of C[m, n] := op(A)[m, k] @ op(B)[k, n] + beta*C."""
    cdef int r0, r1, c0, c1
    _block(u, U, m, n, &r0, &r1, &c0, &c1)
    if r1 <= r0 or c1 <= c0:
        return
    gemm_rm(trans_a, trans_b, r1 - r0, c1 - c0, k, 1,
            a + (r0 if trans_a else <Py_ssize_t>r0 * lda), lda,
            b + (<Py_ssize_t>c0 * ldb if trans_b else c0), ldb,
            beta, c + <Py_ssize_t>r0 * ldc + c0, ldc)


cdef void _forward_part(int u, int U, const real_t* x, const real_t* weight,
                        const real_t* bias, real_t* y, int n_batch, int n_in,
                        int n_out) noexcept nogil:
    """Tile u of U of y = x @ weight^T + bias."""
    cdef int i, o, r0, r1, c0, c1
    cdef double t0 = unit_begin()
    _gemm_part(u, U, False, True, n_batch, n_out, n_in, x, n_in, weight, n_in, 0, y, n_out)
    if bias != NULL:
        _block(u, U, n_batch, n_out, &r0, &r1, &c0, &c1)
        for i in range(r0, r1):
            for o in range(c0, c1):
                y[<Py_ssize_t>i * n_out + o] += bias[o]
    unit_end(b"linear_forward", u, U, t0)


cdef int _check_int_sizes(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out) except -1:
    """The GEMMs count in C int (BLAS's convention): refuse sizes that would wrap around."""
    if n > 2147483647 or n_in > 2147483647 or n_out > 2147483647:
        raise ValueError(f"linear: sizes N={n}, IN={n_in}, OUT={n_out} must each be "
                         f"<= 2147483647")
    return 0


def linear_forward(const real_t[:, ::1] x,        # IN  (N, IN)
                   const real_t[:, ::1] weight,   # IN  (OUT, IN)
                   const real_t[::1] bias,        # IN  (OUT,) or None
                   real_t[:, ::1] y,              # OUT (N, OUT)
                   int n_threads):
    """y[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]."""
    _check_int_sizes(x.shape[0], x.shape[1], weight.shape[0])
    cdef int n_batch = x.shape[0]
    cdef int n_in = x.shape[1]
    cdef int n_out = weight.shape[0]
    cdef int U = _n_tiles(<long long>n_batch * n_in * n_out)
    cdef int T = min(n_threads, U)
    cdef int u
    cdef const real_t* xp = &x[0, 0] if n_batch > 0 else NULL
    cdef const real_t* wp = &weight[0, 0]
    cdef const real_t* bp = &bias[0] if bias is not None else NULL
    cdef real_t* yp = &y[0, 0] if n_batch > 0 else NULL
    if n_batch == 0:
        return
    with nogil:
        if T <= 1:
            for u in range(U):
                _forward_part(u, U, xp, wp, bp, yp, n_batch, n_in, n_out)
        else:
            for u in prange(U, num_threads=T, schedule="static"):
                _forward_part(u, U, xp, wp, bp, yp, n_batch, n_in, n_out)


cdef void _backward_part(int u, int U, const real_t* x, const real_t* weight,
                         const real_t* grad_y, real_t* grad_x, real_t* grad_weight,
                         real_t* grad_bias, real_t beta, int n_batch, int n_in,
                         int n_out) noexcept nogil:
    """Tile u of U of each of linear_backward's three results."""
    cdef int i, o, o0, o1
    cdef const real_t* row
    cdef double t0 = unit_begin()
    if n_batch > 0 and grad_x != NULL:
        _gemm_part(u, U, False, False, n_batch, n_in, n_out, grad_y, n_out, weight, n_in,
                   0, grad_x, n_in)
    _gemm_part(u, U, True, False, n_out, n_in, n_batch, grad_y, n_out, x, n_in,
               beta, grad_weight, n_in)
    o0, o1 = _split(n_out, u, U), _split(n_out, u + 1, U)
    if beta == 0:
        for o in range(o0, o1):
            grad_bias[o] = 0
    # Sample by sample, so the loop over o vectorizes and each sum runs in sample order.
    for i in range(n_batch):
        row = grad_y + <Py_ssize_t>i * n_out
        for o in range(o0, o1):
            grad_bias[o] += row[o]
    unit_end(b"linear_backward", u, U, t0)


def linear_backward(const real_t[:, ::1] x,             # IN  (N, IN)
                    const real_t[:, ::1] weight,        # IN  (OUT, IN)
                    const real_t[:, ::1] grad_y,        # IN  (N, OUT)
                    real_t[:, ::1] grad_x,              # OUT (N, IN) or None
                    real_t[:, ::1] grad_weight,         # OUT (OUT, IN)
                    real_t[::1] grad_bias,              # OUT (OUT,)
                    bint accumulate, int n_threads):
    """grad_x = grad_y @ weight; grad_weight (+)= grad_y^T @ x; grad_bias (+)= sum_n grad_y[n],
    the sums added to the arrays' contents when accumulate is true. grad_x None skips it."""
    _check_int_sizes(x.shape[0], x.shape[1], weight.shape[0])
    cdef int n_batch = x.shape[0]
    cdef int n_in = x.shape[1]
    cdef int n_out = weight.shape[0]
    # Tiled by one GEMM's work, not both: each GEMM call keeps at least _GRAIN multiply-adds.
    cdef int U = _n_tiles(<long long>n_batch * n_in * n_out)
    cdef int T = min(n_threads, U)
    cdef int u
    cdef real_t beta = 1 if accumulate else 0
    cdef const real_t* xp = &x[0, 0] if n_batch > 0 else NULL
    cdef const real_t* gyp = &grad_y[0, 0] if n_batch > 0 else NULL
    cdef real_t* gxp = &grad_x[0, 0] if n_batch > 0 and grad_x is not None else NULL
    cdef real_t* gwp = &grad_weight[0, 0]
    cdef real_t* gbp = &grad_bias[0]
    cdef const real_t* wp = &weight[0, 0]
    with nogil:
        if T <= 1:
            for u in range(U):
                _backward_part(u, U, xp, wp, gyp, gxp, gwp, gbp, beta,
                               n_batch, n_in, n_out)
        else:
            for u in prange(U, num_threads=T, schedule="static"):
                _backward_part(u, U, xp, wp, gyp, gxp, gwp, gbp, beta,
                               n_batch, n_in, n_out)
