"""Stride-1 3x3 convolution by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3).

Design
------
(a) Each m x m block of output (m = 2 or 4) is computed from the (m+2) x (m+2) input tile
    under it with (m+2)^2 multiplications per input channel instead of 9 m^2 (the
    transforms: _winograd_impl.h, _winograd4_impl.h). For a block of tiles the products
    summed over the input channels are (m+2)^2 GEMMs, M[xi] (F, T) = U[xi] (F, C) @ V[xi]
    (C, T), with U the transformed filters and V the transformed input tiles; the output
    transform turns M back into pixels and adds the bias. F(2x2, 3x3) does 2.25 times fewer
    multiply-adds than im2col + GEMM, F(4x4, 3x3) 4 times; their transformed inputs hold 4
    and 2.25 values per input pixel, where an im2col matrix holds 9.
(b) Same conventions as _conv2d (NCHW, C-contiguous, float32 or float64, any zero padding).
    Layouts: V[xi] at xi*ldv, (C, T) row-major; M (F, (m+2)^2, T), so that the output
    transform's (m+2)^2 read streams lie a constant distance apart (see _winograd.h).
(c) Threading as in _conv2d, design note (c): units fixed by the shapes alone, every unit
    makes the same GEMM calls whoever runs it. Forward: a unit is a run of tile rows of one
    sample, min(4, 64 / N) parts per sample (1 from 64 samples on), processed in blocks of
    whole tile rows of about _BLOCK_TILES tiles (the GEMMs' T). Weight gradient (F(2x2, 3x3)
    only): units of (sample group, tile-row part), each gathering _WEIGHT_TILES tiles across
    its samples before 16 GEMMs into a partial sum of its own; the partials are added in unit
    order. So any thread count gives the same bits.
(d) Rounding: F(2x2, 3x3)'s transforms add up to 9 terms and halve exactly, and its results
    differ from im2col + GEMM's by a few units in the last place of the largest terms;
    F(4x4, 3x3)'s multiply by up to 8 and divide by 24, about 15 times that. The tests state
    the bounds (tests/test_kernel_winograd.py, docs/guide/performance.rst).
"""
from cython.parallel cimport prange
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from ._types cimport real_t
from ._blas cimport gemm_rm
from ._rowsum cimport add_row_sums
from ._trace cimport unit_begin, unit_end


cdef extern from "_winograd.h":
    void fc_wino_input_f(const float* x, int C, int H, int W, int ph, int pw, int tw, int a0,
                         int a1, float* V, long ldv, long nt, float* scratch) noexcept nogil
    void fc_wino_input_d(const double* x, int C, int H, int W, int ph, int pw, int tw, int a0,
                         int a1, double* V, long ldv, long nt, double* scratch) noexcept nogil
    void fc_wino_output_f(const float* M, long xs, long fs, int F, const float* bias,
                          float* y, int OH, int OW, int tw, int a0, int a1) noexcept nogil
    void fc_wino_output_d(const double* M, long xs, long fs, int F, const double* bias,
                          double* y, int OH, int OW, int tw, int a0, int a1) noexcept nogil
    void fc_wino_filter_f(const float* w, int F, int C, int f0, int f1, float* U) noexcept nogil
    void fc_wino_filter_d(const double* w, int F, int C, int f0, int f1,
                          double* U) noexcept nogil
    void fc_wino4_input_f(const float* x, int C, int H, int W, int ph, int pw, int tw, int a0,
                          int a1, float* V, long ldv, long nt, float* scratch) noexcept nogil
    void fc_wino4_input_d(const double* x, int C, int H, int W, int ph, int pw, int tw, int a0,
                          int a1, double* V, long ldv, long nt, double* scratch) noexcept nogil
    void fc_wino4_output_f(const float* M, long xs, long fs, int F, const float* bias,
                           float* y, int OH, int OW, int tw, int a0, int a1) noexcept nogil
    void fc_wino4_output_d(const double* M, long xs, long fs, int F, const double* bias,
                           double* y, int OH, int OW, int tw, int a0, int a1) noexcept nogil
    void fc_wino4_filter_f(const float* w, int F, int C, int f0, int f1, float* U) noexcept nogil
    void fc_wino4_filter_d(const double* w, int F, int C, int f0, int f1,
                           double* U) noexcept nogil
    void fc_wino_grad_output_f(const float* gy, int F, int OH, int OW, int tw, int a0, int a1,
                               float* Z, long xs, long fs) noexcept nogil
    void fc_wino_grad_output_d(const double* gy, int F, int OH, int OW, int tw, int a0,
                               int a1, double* Z, long xs, long fs) noexcept nogil
    void fc_wino_filter_grad_f(const float* dU, int F, int C, int f0, int f1, float beta,
                               float* gw) noexcept nogil
    void fc_wino_filter_grad_d(const double* dU, int F, int C, int f0, int f1, double beta,
                               double* gw) noexcept nogil


cdef enum:
    # As in _conv2d: units for up to 64 threads, at most 4 parts per sample.
    _UNITS = 64
    _SAMPLE_PARTS = 4
    # Tiles the weight gradient gathers, across the samples of a unit, before its 16 GEMMs
    # (their inner dimension): _winograd.h's FC_WINO_WEIGHT_TILES.
    _WEIGHT_TILES = 128
    # The weight gradient's partial sums (16*F*C elements per unit) take at most about this
    # many elements in all (64 MB in float32): 64 units up to 128 x 128 channels, fewer for
    # wider layers.
    _PARTIAL_ELEMENTS = 1 << 24


# Tiles per block (the GEMMs' T), rounded to whole tile rows. _winograd.h's FC_WINO_NT
# assumes 128 for the transforms compiled with constant strides; another value runs the
# general ones.
cdef int _BLOCK_TILES = 128


def _set_block_tiles(int n):
    """Set the tiles per block (>= 1); returns the previous value. For tests and tuning."""
    global _BLOCK_TILES
    if n < 1:
        raise ValueError(f"_set_block_tiles: n must be >= 1; got {n}")
    old = _BLOCK_TILES
    _BLOCK_TILES = n
    return old


cdef struct Wino:
    int c, h, w, f, ph, pw, oh, ow
    int m                 # output tile size: 2 for F(2x2, 3x3), 4 for F(4x4, 3x3)
    int n_xi              # transformed values per tile, (m + 2)^2: 16 or 36
    int th, tw            # tile rows and columns: ceil(oh / m), ceil(ow / m)
    int rows              # tile rows per block
    int parts             # units per sample
    Py_ssize_t nt         # tiles per block at most: rows * tw
    Py_ssize_t ldv        # distance between V[xi] and V[xi + 1]; M and Z are laid out
                          # (F, 16, nt): M[xi] at xi*nt, rows 16*nt apart
    Py_ssize_t stride     # per-thread workspace: V (16*C*nt), M (16*F*nt), scratch


cdef inline Py_ssize_t _padded(Py_ssize_t n, Py_ssize_t line) noexcept nogil:
    """n rounded up to whole cache lines, plus two lines: the 16 matrices V[xi] (or M[xi])
    then start in different cache sets even where n is a power of two (the transforms read
    or write all 16 at once; 16 streams 16 KB apart ran 2.4x slower)."""
    return (n + line - 1) // line * line + 2 * line


cdef inline int _split(int total, int t, int n_parts) noexcept nogil:
    return <int>((<long long>total * t) // n_parts)


cdef void _unit(const real_t* x, const real_t* U, const real_t* bias, real_t* y,
                const Wino* g, int a0, int a1, real_t* ws) noexcept nogil:
    """Tile rows [a0, a1) of one sample: x (C, H, W) -> y (F, OH, OW), block by block."""
    cdef real_t* V = ws
    cdef real_t* M = ws + g.n_xi * g.ldv
    cdef real_t* scratch = M + g.n_xi * g.f * g.nt
    cdef int b0 = a0, b1, xi
    cdef Py_ssize_t nt
    while b0 < a1:
        b1 = min(a1, b0 + g.rows)
        nt = <Py_ssize_t>(b1 - b0) * g.tw
        if g.m == 4:
            if real_t is float:
                fc_wino4_input_f(x, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V, g.ldv, nt,
                                 scratch)
            else:
                fc_wino4_input_d(x, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V, g.ldv, nt,
                                 scratch)
        elif real_t is float:
            fc_wino_input_f(x, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V, g.ldv, nt,
                            scratch)
        else:
            fc_wino_input_d(x, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V, g.ldv, nt,
                            scratch)
        for xi in range(g.n_xi):
            gemm_rm(False, False, g.f, <int>nt, g.c, 1, U + xi * g.f * g.c, g.c,
                    V + xi * g.ldv, <int>nt, 0, M + xi * g.nt, <int>(g.n_xi * g.nt))
        if g.m == 4:
            if real_t is float:
                fc_wino4_output_f(M, g.nt, 36 * g.nt, g.f, bias, y, g.oh, g.ow, g.tw, b0, b1)
            else:
                fc_wino4_output_d(M, g.nt, 36 * g.nt, g.f, bias, y, g.oh, g.ow, g.tw, b0, b1)
        elif real_t is float:
            fc_wino_output_f(M, g.nt, 16 * g.nt, g.f, bias, y, g.oh, g.ow, g.tw, b0, b1)
        else:
            fc_wino_output_d(M, g.nt, 16 * g.nt, g.f, bias, y, g.oh, g.ow, g.tw, b0, b1)
        b0 = b1


cdef void _forward_impl(const real_t* x, const real_t* weight, const real_t* bias, real_t* y,
                        const Wino* g, int n_batch, int T, real_t* U,
                        real_t* ws) noexcept nogil:
    cdef int t, u, n, j, units = n_batch * g.parts
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.oh * g.ow
    cdef double t0
    # The filter transform is a function of each filter alone: any split gives the same bits.
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        t0 = unit_begin()
        if g.m == 4:
            if real_t is float:
                fc_wino4_filter_f(weight, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T),
                                  U)
            else:
                fc_wino4_filter_d(weight, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T),
                                  U)
        elif real_t is float:
            fc_wino_filter_f(weight, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T), U)
        else:
            fc_wino_filter_d(weight, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T), U)
        unit_end(b"winograd_filter", 0, 0, t0)
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        for u in range(_split(units, t, T), _split(units, t + 1, T)):
            t0 = unit_begin()
            n = u // g.parts
            j = u % g.parts
            _unit(x + n * xs, U, bias, y + n * ys, g, _split(g.th, j, g.parts),
                  _split(g.th, j + 1, g.parts), ws + t * g.stride)
            unit_end(b"winograd_forward", u, units, t0)


cdef void _thread_workspace(Wino* g, Py_ssize_t line) noexcept:
    """Sizes of a thread's workspace: V (16 x ldv), M or Z (16 x F x nt), the transform's
    scratch rows, rounded to cache lines."""
    g.ldv = _padded(<Py_ssize_t>g.c * g.nt, line)
    g.stride = (g.n_xi * (g.ldv + <Py_ssize_t>g.f * g.nt) + (g.m * <Py_ssize_t>g.rows + 8)
                * (g.m * g.tw + 2) + 2 * line - 1) // line * line


cdef Wino _geometry(const Py_ssize_t* x_shape, const Py_ssize_t* w_shape,
                    const Py_ssize_t* y_shape, Py_ssize_t ph, Py_ssize_t pw,
                    Py_ssize_t n_batch, str fn, str y_name, int m=2) except *:
    cdef Wino g
    cdef Py_ssize_t limit = 1 << 30
    if w_shape[2] != 3 or w_shape[3] != 3 or w_shape[1] != x_shape[1]:
        raise ValueError(f"{fn}: weight must be (F, {x_shape[1]}, 3, 3); got "
                         f"({w_shape[0]}, {w_shape[1]}, {w_shape[2]}, {w_shape[3]})")
    if ph < 0 or pw < 0 or x_shape[2] + 2 * ph < 3 or x_shape[3] + 2 * pw < 3 \
            or x_shape[2] + 2 * ph > limit or x_shape[3] + 2 * pw > limit:
        raise ValueError(f"{fn}: padding ({ph}, {pw}) out of range for input "
                         f"{x_shape[2]}x{x_shape[3]}")
    g.c, g.h, g.w, g.f = x_shape[1], x_shape[2], x_shape[3], w_shape[0]
    g.ph, g.pw = ph, pw
    g.oh, g.ow = g.h + 2 * ph - 2, g.w + 2 * pw - 2
    if y_shape[0] != n_batch or y_shape[1] != g.f or y_shape[2] != g.oh or y_shape[3] != g.ow:
        raise ValueError(f"{fn}: {y_name} must be ({n_batch}, {g.f}, {g.oh}, {g.ow}); "
                         f"got ({y_shape[0]}, {y_shape[1]}, {y_shape[2]}, {y_shape[3]})")
    if <long long>g.c * g.h * g.w > limit or <long long>g.f * g.oh * g.ow > limit \
            or <long long>g.f * g.c > limit:
        raise ValueError(f"{fn}: geometry too large")
    g.m, g.n_xi = m, (m + 2) * (m + 2)
    g.th, g.tw = (g.oh + m - 1) // m, (g.ow + m - 1) // m
    g.rows = max(1, min(g.th, _BLOCK_TILES // g.tw))
    g.nt = <Py_ssize_t>g.rows * g.tw
    g.parts = max(1, min(min(<int>_SAMPLE_PARTS, (_UNITS + n_batch - 1) // max(n_batch, 1)),
                         g.th))
    return g


def winograd_forward(const real_t[:, :, :, ::1] x,        # IN  (N, C, H, W)
                     const real_t[:, :, :, ::1] weight,   # IN  (F, C, 3, 3)
                     const real_t[::1] bias,              # IN  (F,) or None
                     real_t[:, :, :, ::1] y,              # OUT (N, F, OH, OW)
                     Py_ssize_t ph, Py_ssize_t pw, int n_threads, int tile=2):
    """y[n,f,i,j] = bias[f] + sum_{c,u,v} weight[f,c,u,v] * x[n,c,i+u-ph, j+v-pw]: a stride-1
    3x3 convolution by F(tile x tile, 3x3), tile 2 or 4 (arguments validated by
    fastconv.functional._conv)."""
    cdef int n_batch = x.shape[0]
    if tile != 2 and tile != 4:
        raise ValueError(f"winograd_forward: tile must be 2 or 4; got {tile}")
    cdef Wino g = _geometry(x.shape, weight.shape, y.shape, ph, pw, n_batch,
                           "winograd_forward", "y", tile)
    cdef size_t item = sizeof(real_t)
    cdef Py_ssize_t line = 64 // item
    cdef int T = max(1, n_threads)
    cdef real_t* U
    cdef real_t* ws
    cdef object total
    if bias is not None and bias.shape[0] != g.f:
        raise ValueError(f"winograd_forward: bias must be ({g.f},); got ({bias.shape[0]},)")
    if n_batch == 0:
        return
    _thread_workspace(&g, line)
    total = <object>(g.n_xi * <Py_ssize_t>g.f * g.c) + <object>T * g.stride
    if total * item > <object>PY_SSIZE_T_MAX:
        raise MemoryError(f"winograd_forward: a workspace of {total} elements does not fit")
    U = <real_t*>malloc(<size_t>total * item)
    if U == NULL:
        raise MemoryError(f"winograd_forward: cannot allocate a workspace of {total} elements")
    ws = U + g.n_xi * <Py_ssize_t>g.f * g.c
    try:
        with nogil:
            _forward_impl(&x[0, 0, 0, 0], &weight[0, 0, 0, 0],
                          &bias[0] if bias is not None else NULL, &y[0, 0, 0, 0], &g,
                          n_batch, T, U, ws)
    finally:
        free(U)


# ---------------------------------------------------------------------------------------------
# Weight gradient: dL/dg = G^T [sum over tiles of (A dY A^T) .* (B^T d B)] G, the adjoint of
# the forward pass. The sum over a sample group's tiles is 16 GEMMs per block,
# dU[xi] (F, C) += Z[xi] (F, T) @ V[xi]^T (T, C), into the group's partial dU; the partials
# are added in group order and transformed back once.
# ---------------------------------------------------------------------------------------------

cdef inline int _weight_row_parts(const Wino* g, int n_batch) noexcept nogil:
    """Tile-row parts of each sample in the weight gradient: min(4, 64 / N), 1 from 64
    samples on (as the forward pass)."""
    return max(1, min(min(<int>_SAMPLE_PARTS, (_UNITS + n_batch - 1) // max(n_batch, 1)),
                      g.th))


cdef inline int _weight_units(const Wino* g, int n_batch) noexcept nogil:
    """Units of the weight gradient, each summing into a partial of its own: R row parts
    (_weight_row_parts) times S sample groups, S*R <= 64, fewer where the partial sums would
    pass _PARTIAL_ELEMENTS."""
    cdef int R = _weight_row_parts(g, n_batch)
    cdef long long per = 16 * <long long>g.f * g.c + g.f
    cdef long long groups = min(<long long>n_batch, max(1, <long long>_UNITS // R))
    groups = min(groups, max(1, <long long>_PARTIAL_ELEMENTS // (per * R)))
    return <int>(groups * R)


cdef void _weight_flush(const Wino* g, int k, real_t beta, real_t* dU, real_t* V,
                        real_t* Z) noexcept nogil:
    """dU[xi] = beta*dU[xi] + Z[xi] (F, k) @ V[xi]^T (k, C) for the k gathered tiles."""
    cdef int xi
    for xi in range(16):
        gemm_rm(False, True, g.f, g.c, k, 1, Z + xi * g.nt, <int>(16 * g.nt),
                V + xi * g.ldv, <int>g.nt, beta, dU + xi * g.f * g.c, g.c)


cdef void _weight_group(const real_t* x, const real_t* gy, const Wino* g, int n0, int n1,
                        int a0, int a1, real_t* dU, real_t* db, real_t* ws) noexcept nogil:
    """dU (16, F, C) and db (F,) = the sums over tile rows [a0, a1) of samples [n0, n1) (x
    and gy point to the batch's first sample); db sums the output rows of those tiles. The
    tiles are gathered, across samples, g.nt (the weight gradient's block) at a time before
    each round of GEMMs, so that thin planes still give them a deep inner dimension."""
    cdef real_t* V = ws
    cdef real_t* Z = ws + 16 * g.ldv
    cdef real_t* scratch = Z + 16 * g.f * g.nt
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.oh * g.ow
    cdef real_t beta = 0
    cdef int n, b0, b1, f, fit, off = 0, r0 = min(2 * a0, g.oh), r1 = min(2 * a1, g.oh)
    memset(db, 0, g.f * sizeof(real_t))
    for n in range(n0, n1):
        for f in range(g.f):
            add_row_sums(gy + n * ys + (<Py_ssize_t>f * g.oh + r0) * g.ow, 1,
                         <Py_ssize_t>(r1 - r0) * g.ow, 0, db + f)
        b0 = a0
        while b0 < a1:
            fit = (<int>g.nt - off) // g.tw
            if fit == 0:
                _weight_flush(g, off, beta, dU, V, Z)
                beta = 1
                off = 0
                fit = <int>g.nt // g.tw
            b1 = min(a1, b0 + fit)
            if real_t is float:
                fc_wino_input_f(x + n * xs, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V + off,
                                g.ldv, g.nt, scratch)
                fc_wino_grad_output_f(gy + n * ys, g.f, g.oh, g.ow, g.tw, b0, b1, Z + off,
                                      g.nt, 16 * g.nt)
            else:
                fc_wino_input_d(x + n * xs, g.c, g.h, g.w, g.ph, g.pw, g.tw, b0, b1, V + off,
                                g.ldv, g.nt, scratch)
                fc_wino_grad_output_d(gy + n * ys, g.f, g.oh, g.ow, g.tw, b0, b1, Z + off,
                                      g.nt, 16 * g.nt)
            off += (b1 - b0) * g.tw
            b0 = b1
    if off > 0:
        _weight_flush(g, off, beta, dU, V, Z)
        beta = 1
    if beta == 0:
        memset(dU, 0, 16 * <Py_ssize_t>g.f * g.c * sizeof(real_t))


cdef void _weight_impl(const real_t* x, const real_t* gy, real_t* gw, real_t* gb,
                       bint accumulate, const Wino* g, int n_batch, int T, real_t* parts,
                       Py_ssize_t part_stride, real_t* ws) noexcept nogil:
    cdef int R = _weight_row_parts(g, n_batch)
    cdef int S = _weight_units(g, n_batch)
    cdef int groups = S // R
    cdef int t, s, u
    cdef Py_ssize_t e, e0, e1
    cdef Py_ssize_t size = 16 * <Py_ssize_t>g.f * g.c
    cdef double t0
    cdef real_t* src
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        for u in range(_split(S, t, T), _split(S, t + 1, T)):
            t0 = unit_begin()
            _weight_group(x, gy, g, _split(n_batch, u // R, groups),
                          _split(n_batch, u // R + 1, groups), _split(g.th, u % R, R),
                          _split(g.th, u % R + 1, R), parts + u * part_stride,
                          parts + u * part_stride + size, ws + t * g.stride)
            unit_end(b"winograd_weight_grad", u, S, t0)
    # Partial sums added in unit order (element-wise, so any split of the elements gives
    # the same bits), then back from the Winograd domain.
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        t0 = unit_begin()
        e0 = _split(<int>(size + g.f), t, T)
        e1 = _split(<int>(size + g.f), t + 1, T)
        for s in range(1, S):
            src = parts + s * part_stride
            for e in range(e0, e1):
                parts[e] += src[e]
        unit_end(b"winograd_weight_grad_sum", 0, 0, t0)
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        t0 = unit_begin()
        if real_t is float:
            fc_wino_filter_grad_f(parts, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T),
                                  1 if accumulate else 0, gw)
        else:
            fc_wino_filter_grad_d(parts, g.f, g.c, _split(g.f, t, T), _split(g.f, t + 1, T),
                                  1 if accumulate else 0, gw)
        unit_end(b"winograd_filter_grad", 0, 0, t0)
    for s in range(g.f):
        gb[s] = parts[size + s] + (gb[s] if accumulate else 0)


def winograd_backward_weight(const real_t[:, :, :, ::1] x,        # IN  (N, C, H, W)
                             const real_t[:, :, :, ::1] grad_y,   # IN  (N, F, OH, OW)
                             real_t[:, :, :, ::1] grad_weight,    # OUT (F, C, 3, 3)
                             real_t[::1] grad_bias,               # OUT (F,)
                             bint accumulate, Py_ssize_t ph, Py_ssize_t pw, int n_threads):
    """grad_weight[f,c,u,v] (+)= sum_{n,i,j} grad_y[n,f,i,j] * x[n,c,i+u-ph, j+v-pw] and
    grad_bias[f] (+)= sum_{n,i,j} grad_y[n,f,i,j] of a stride-1 3x3 convolution (arguments
    validated by fastconv.functional._conv)."""
    cdef int n_batch = x.shape[0]
    cdef Wino g = _geometry(x.shape, grad_weight.shape, grad_y.shape, ph, pw, n_batch,
                           "winograd_backward_weight", "grad_y")
    cdef size_t item = sizeof(real_t)
    cdef Py_ssize_t line = 64 // item
    cdef int T = max(1, n_threads)
    cdef int S = _weight_units(&g, n_batch)
    cdef Py_ssize_t part_stride = _padded(16 * <Py_ssize_t>g.f * g.c + g.f, line)
    cdef real_t* parts
    cdef object total
    if grad_bias.shape[0] != g.f:
        raise ValueError(f"winograd_backward_weight: grad_bias must be ({g.f},); got "
                         f"({grad_bias.shape[0]},)")
    if n_batch == 0:
        if not accumulate:
            grad_weight[...] = 0
            grad_bias[...] = 0
        return
    # The weight gradient's block: _WEIGHT_TILES tiles gathered across samples (whole tile
    # rows; one row where a row is longer).
    g.rows = max(1, _WEIGHT_TILES // g.tw)
    g.nt = max(<Py_ssize_t>_WEIGHT_TILES, g.tw)
    _thread_workspace(&g, line)
    total = <object>S * part_stride + <object>T * g.stride
    if total * item > <object>PY_SSIZE_T_MAX:
        raise MemoryError(f"winograd_backward_weight: a workspace of {total} elements does "
                          f"not fit")
    parts = <real_t*>malloc(<size_t>total * item)
    if parts == NULL:
        raise MemoryError(f"winograd_backward_weight: cannot allocate a workspace of {total} "
                          f"elements")
    try:
        with nogil:
            _weight_impl(&x[0, 0, 0, 0], &grad_y[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                         &grad_bias[0], accumulate, &g, n_batch, T, parts, part_stride,
                         parts + S * part_stride)
    finally:
        free(parts)
