"""2-D convolution (cross-correlation, as in Torch and PyTorch) through im2col and GEMM.

Design
------
(a) Ops, each one call into nogil code:
    conv2d_forward          y = weight * x + bias
    conv2d_backward_input   grad_x = weight^T * grad_y          (col2im of a GEMM)
    conv2d_backward         grad_weight, grad_bias and, optionally, grad_x, sharing each
                            sample's im2col matrix (backward_weight is this without grad_x)
(b) Layout: NCHW, C-contiguous, float32 or float64 (one compiled specialisation each).
    weight (F, C, KH, KW) is read as the row-major matrix (F, K), K = C*KH*KW. The im2col
    matrix of one sample is (K, P), P = OH*OW: row k = (c*KH + u)*KW + v holds
    x[c, i*sh + u - ph, j*sw + v - pw] at column p = i*OW + j, zero in the padding. Then
    y[n] = weight @ col(x[n]) is one GEMM whose result is already NCHW.
(c) Threading: OpenMP only; SciPy's BLAS is pinned to one thread (fastconv._threads) and is
    called from inside the parallel regions. The results are the same bits for any thread
    count: the work is cut into *units* fixed by the shapes alone, every unit makes the same
    GEMM calls whoever runs it, threads take contiguous runs of units, and partial results
    are added in unit order. (Cutting a GEMM differently is not an option: OpenBLAS's result
    for an element changes with the extents of the product it is computed in.)
    Units are cut for 64 threads wherever the work allows (_UNITS), and a sample into at
    most 4 parts (_SAMPLE_PARTS), so a batch of 1 runs in 4 units and a batch of 32 in 64:
    - forward: min(4, 64 / N) parts per sample, 1 from 64 samples on: where K <= P (as in a
      first layer) output-row tiles of at least _TILE_PIXELS pixels (each needs only its own
      columns of the im2col matrix); where K > P (few output pixels) input-channel groups of
      whole channel blocks, whose (F, P) partial outputs are then added in group order, with
      the bias last;
    - backward, K > P: (sample group, input-channel group) units. A channel group is a
      channel block (at least min(C, 4) groups), so every GEMM keeps the shape it has for a
      whole sample; its weight-gradient columns, bias rows and input-gradient channels need
      nothing from the other channel groups. Each sample group sums its samples into a
      partial weight gradient of its own, and the partials are added in group order; there
      are as many sample groups as make 64 units;
    - backward, K <= P: the weight gradient (inner dimension P, a small (F, K) result) is
      cut into sample groups times, below 64 samples, output-row tiles, whose partial (F, K)
      gradients are added in unit order; the input gradient into (sample, channel group)
      units.
    Pure copies and element-wise sums (grad_y transposed for the whole batch, the partial
    sums) are shared by the thread count: how they are cut cannot change a bit.
    Every unit reports its wall time to fastconv._kernels._trace while a trace is on
    (bench/scaling.py builds its model from these).
    Each unit walks its channels in cache-sized blocks (about 2^14 elements of im2col, see
    _block_channels) so that a block is consumed by its GEMM while still in L1/L2.
(d) col2im adds each channel's contributions in the order (u, v, i), whatever the split.
(e) Inner loops run over contiguous output columns, with the padding handled by computing the
    valid ranges once per row instead of a branch per element, so they vectorize.
(f) The weight gradient multiplies by grad_y transposed (copied for the batch) when K >= 128:
    OpenBLAS's product with both operands transposed is much faster there than the plain
    one (see _weight_grad_block).
(g) conv2d_backward rebuilds im2col per sample, which costs far less than the memory a
    saved batch-wide im2col matrix would take, with one exception: a caller may pass a
    buffer (col_keep / col_kept) for the last sample, which the forward pass then builds
    whole where K > P and the weight gradient reads back. fastconv.nn.Conv2d does this in
    training mode at batch 1, where it saves one im2col matrix in two.
"""
from cython.parallel cimport prange
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from ._types cimport real_t
from ._blas cimport gemm_rm
from ._rowsum cimport add_row_sums
from ._trace cimport unit_begin, unit_end


cdef extern from "_conv2d_simd.h":
    void fc_copy_rows_f(float* dst, long dst_step, const float* src, long src_step, long rows,
                        long n) noexcept nogil
    void fc_copy_rows_d(double* dst, long dst_step, const double* src, long src_step,
                        long rows, long n) noexcept nogil
    void fc_col2im_rows_f(const float* col_c, float* x_c, int H, int W, int h, int kh, int kw,
                          int sh, int ph, int pw, int oh, int ow, long p) noexcept nogil
    void fc_col2im_rows_d(const double* col_c, double* x_c, int H, int W, int h, int kh,
                          int kw, int sh, int ph, int pw, int oh, int ow, long p) noexcept nogil

# Guard elements before and after each thread's im2col buffer: _col2im_unit_stride reads up
# to 7 elements beyond the rows it adds (and masks them out).
cdef enum:
    _GUARD = 8


cdef struct Geom:
    int c, h, w          # input channels and size
    int f, kh, kw        # filters and kernel size
    int sh, sw, ph, pw   # stride and zero padding
    int oh, ow           # output size
    int k                # c*kh*kw: rows of the im2col matrix
    int p                # oh*ow: columns of the im2col matrix


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

cdef inline int _split(int total, int t, int n_parts) noexcept nogil:
    """Start of part t when [0, total) is cut into n_parts contiguous near-equal parts."""
    return <int>((<long long>total * t) // n_parts)


cdef inline void _valid_range(int size, int out_size, int stride, int pad, int offset,
                              int* lo, int* hi) noexcept nogil:
    """[lo, hi): outputs i < out_size with 0 <= i*stride + offset - pad < size."""
    # In 64-bit: a + stride - 1 passes INT_MAX for a stride near it (a 1x1 output).
    cdef long long a = pad - offset
    cdef long long b = <long long>size + pad - offset
    if stride == 1:
        lo[0] = <int>max(a, 0)
        hi[0] = <int>min(out_size, b)
    else:
        lo[0] = <int>min((a + stride - 1) // stride, out_size) if a > 0 else 0
        hi[0] = <int>min(out_size, (b - 1) // stride + 1) if b > 0 else 0
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef inline Py_ssize_t _slice_size(Py_ssize_t n, size_t itemsize) noexcept nogil:
    """Elements per thread slice of a workspace: n rounded up to whole cache lines, plus one
    more line so that neighbouring threads never share a cache line."""
    cdef Py_ssize_t line = 64 // itemsize
    return (n + line - 1) // line * line + line


# Rows of an im2col matrix are short (ow elements, 10 for the 64->64 layer of the homework's
# ConvNet), so per-row loop overhead rivals the copy itself. These helpers move fixed 32-byte
# blocks through memcpy with a constant size, which compilers turn into single vector moves.

cdef inline void _add_row(real_t* dst, const real_t* src, Py_ssize_t n) noexcept nogil:
    """dst[:n] += src[:n] (no overlap), in blocks through local copies that the compiler
    keeps in vector registers."""
    cdef real_t a[8]    # one 32-byte block of float (8) or double (4)
    cdef real_t b[8]
    cdef Py_ssize_t block = 32 // sizeof(real_t)
    cdef Py_ssize_t j = 0
    cdef Py_ssize_t l
    while j + block <= n:
        memcpy(a, dst + j, 32)
        memcpy(b, src + j, 32)
        for l in range(<Py_ssize_t>(32 // sizeof(real_t))):
            a[l] += b[l]
        memcpy(dst + j, a, 32)
        j += block
    while j < n:
        dst[j] += src[j]
        j += 1


cdef void _add_bias(real_t* y, const real_t* bias, int nf, Py_ssize_t ldy, Py_ssize_t n,
                    int first) noexcept nogil:
    """y[i, :n] += bias[i] for i < nf, y row-major with row stride ldy, rows taken in the order
    first, first+1, ..., nf-1, 0, ..., first-1.

    Threads that share the columns of y start at different rows, so that they do not write
    the cache line where their columns meet, in the same row, at the same time.
    """
    cdef Py_ssize_t r, i, j
    cdef real_t b
    cdef real_t* row
    for r in range(nf):
        i = first + r if first + r < nf else first + r - nf
        b = bias[i]
        row = y + i * ldy
        for j in range(n):
            row[j] += b


cdef void _add_partials(real_t* out, const real_t* partials, Py_ssize_t stride, int n_partials,
                        Py_ssize_t e0, Py_ssize_t e1) noexcept nogil:
    """out[e] += partials[1*stride + e] + ... in that order, for e in [e0, e1)."""
    cdef int t
    cdef Py_ssize_t e
    cdef const real_t* src
    for t in range(1, n_partials):
        src = partials + t * stride
        for e in range(e0, e1):
            out[e] += src[e]


# Below this many im2col rows the transposed copy of grad_y costs more than it saves (see
# _weight_grad_block): a first layer (K = 25) keeps the plain product.
cdef int _TRANSPOSE_MIN_K = 128


def _set_transpose_min_k(int n):
    """Set the least K = C*KH*KW at which the weight gradient transposes grad_y; returns the
    previous one. For tests: 0 sends every geometry through the transposed product."""
    global _TRANSPOSE_MIN_K
    if n < 0:
        raise ValueError(f"_set_transpose_min_k: n must be >= 0; got {n}")
    old = _TRANSPOSE_MIN_K
    _TRANSPOSE_MIN_K = n
    return old


cdef inline bint _transposes_grad(const Geom* g) noexcept nogil:
    return g.k >= _TRANSPOSE_MIN_K


cdef void _transpose_pixels(const real_t* grad_y, const Geom* g, Py_ssize_t p0, Py_ssize_t p1,
                            real_t* grad_y_t) noexcept nogil:
    """grad_y_t[p, f] = grad_y[f, p] for pixels p in [p0, p1): one sample's (F, P) gradient
    into (P, F) rows, in tiles of 8 filters so that the written lines stay in L1."""
    cdef Py_ssize_t f0, f1, f, p
    cdef Py_ssize_t nf = g.f
    cdef Py_ssize_t np_ = g.p
    f0 = 0
    while f0 < nf:
        f1 = min(nf, f0 + 8)
        for p in range(p0, p1):
            for f in range(f0, f1):
                grad_y_t[p * nf + f] = grad_y[f * np_ + p]
        f0 = f1


# ---------------------------------------------------------------------------------------------
# im2col / col2im for one sample
# ---------------------------------------------------------------------------------------------

cdef void _im2col(const real_t* x, real_t* col, const Geom* g, int k0, int k1,
                  int i0, int i1) noexcept nogil:
    """col[k - k0, (i - i0)*ow + j] = x[c, i*sh + u - ph, j*sw + v - pw] (0 in the padding)
    for k = (c*kh + u)*kw + v in [k0, k1), output rows i in [i0, i1) and j < ow: a block of
    the im2col matrix of one sample x (c, h, w), with rows (i1 - i0)*ow long.

    Rows of an im2col matrix are made of short runs (ow elements), so loop overhead matters
    as much as the copies: a row that touches the padding is zeroed once with one memset
    rather than per run, indices advance incrementally rather than by division, and the run
    loop does little but copy.
    """
    cdef int k, c, u, v, ia, ib, lo, hi
    cdef Py_ssize_t i, j
    cdef Py_ssize_t ow = g.ow, sw = g.sw
    cdef Py_ssize_t row_step = <Py_ssize_t>g.sh * g.w
    cdef Py_ssize_t length = (i1 - i0) * ow
    cdef real_t* dst
    cdef const real_t* src
    if i1 <= i0:
        return
    v = k0 % g.kw
    u = (k0 // g.kw) % g.kh
    c = k0 // (g.kw * g.kh)
    for k in range(k0, k1):
        _valid_range(g.w, g.ow, g.sw, g.pw, v, &lo, &hi)
        _valid_range(g.h, g.oh, g.sh, g.ph, u, &ia, &ib)
        dst = col + (k - k0) * length
        if lo > 0 or hi < g.ow or ia > i0 or ib < i1:
            memset(dst, 0, length * sizeof(real_t))
        if hi > lo:
            # dst[(i - i0)*ow + j] copies src[i*row_step + j*sw]. Both bases may lie outside
            # their buffers (i0 > 0, u < ph, v < pw); every element accessed is inside.
            # Integer offsets instead cost about 30% here: under -fwrapv the compiler
            # cannot fold them into one pointer per run.
            dst -= i0 * ow
            src = x + (<Py_ssize_t>c * g.h + u - g.ph) * g.w + (v - g.pw)
            if sw == 1:
                i = max(ia, i0)
                if min(ib, i1) > i:
                    if real_t is float:
                        fc_copy_rows_f(dst + i * ow + lo, ow, src + i * row_step + lo,
                                       row_step, min(ib, i1) - i, hi - lo)
                    else:
                        fc_copy_rows_d(dst + i * ow + lo, ow, src + i * row_step + lo,
                                       row_step, min(ib, i1) - i, hi - lo)
            else:
                for i in range(max(ia, i0), min(ib, i1)):
                    for j in range(lo, hi):
                        dst[i * ow + j] = src[i * row_step + j * sw]
        v += 1
        if v == g.kw:
            v = 0
            u += 1
            if u == g.kh:
                u = 0
                c += 1


cdef void _col2im(const real_t* col, real_t* x, const Geom* g, int c0, int c1,
                  int row0) noexcept nogil:
    """x[c, hin, win] = sum of col[(c*kh + u)*kw + v - row0, i*ow + j] over all (u, v, i, j)
    with i*sh + u - ph = hin and j*sw + v - pw = win, for channels c in [c0, c1): col holds
    the im2col rows from row0 on.

    The adjoint of _im2col. Channels are disjoint, so threads split them without races, and
    each element's terms are added in the order (u, v) whatever the split. The loop order
    (u, v, then output rows i) reads col sequentially and makes consecutive
    read-modify-writes of x fall in different input rows: shifted, overlapping updates of
    one short row in a row (v, v+1, ...) would stall on store-to-load forwarding.
    """
    cdef int c, u, v, i, ilo, ihi, lo, hi
    cdef Py_ssize_t j
    cdef real_t* dst
    cdef const real_t* src
    if c1 <= c0:
        return
    memset(x + <Py_ssize_t>c0 * g.h * g.w, 0, <Py_ssize_t>(c1 - c0) * g.h * g.w * sizeof(real_t))
    for c in range(c0, c1):
        for u in range(g.kh):
            _valid_range(g.h, g.oh, g.sh, g.ph, u, &ilo, &ihi)
            for v in range(g.kw):
                _valid_range(g.w, g.ow, g.sw, g.pw, v, &lo, &hi)
                if hi <= lo:
                    continue
                src = col + (<Py_ssize_t>(c * g.kh + u) * g.kw + v - row0) * g.p
                for i in range(ilo, ihi):
                    # dst[j*sw] is x[c, i*sh + u - ph, j*sw + v - pw], the column j = lo
                    # first; src[j] is col at (i, j).
                    dst = x + ((<Py_ssize_t>c * g.h + i * g.sh + u - g.ph) * g.w
                               + lo * g.sw + v - g.pw)
                    if g.sw == 1:
                        _add_row(dst, src + <Py_ssize_t>i * g.ow + lo, hi - lo)
                    else:
                        for j in range(lo, hi):
                            dst[(j - lo) * g.sw] += src[<Py_ssize_t>i * g.ow + j]


cdef void _col2im_unit_stride(const real_t* col, real_t* x, const Geom* g, int c0, int c1,
                              int row0) noexcept nogil:
    """_col2im for a horizontal stride of 1, by output chunks instead of input rows.

    Each chunk of 8 consecutive elements of a row of x is summed in registers over its
    (u, v) taps, in that order (design note (d)), and stored once: a tap adds the col row
    segment that lands on the chunk, read as 8 elements and masked to the columns j in
    [0, ow) that exist. The row-by-row form read and wrote x once per tap and short row
    (ow = 10 in the homework's 64->64 layer). Measured on that layer, one thread, one
    sample: the input gradient went from 292 to 237 us, its GEMM (~190 us) unchanged.

    col must have _GUARD readable elements before its first and after its last row.
    """
    cdef int c, h
    cdef const real_t* col_c
    cdef real_t* x_c
    for c in range(c0, c1):
        col_c = col + (<Py_ssize_t>c * g.kh * g.kw - row0) * g.p
        x_c = x + <Py_ssize_t>c * g.h * g.w
        for h in range(0, g.h, 2):
            if real_t is float:
                fc_col2im_rows_f(col_c, x_c, g.h, g.w, h, g.kh, g.kw, g.sh, g.ph, g.pw, g.oh,
                                 g.ow, g.p)
            else:
                fc_col2im_rows_d(col_c, x_c, g.h, g.w, h, g.kh, g.kw, g.sh, g.ph, g.pw, g.oh,
                                 g.ow, g.p)


# ---------------------------------------------------------------------------------------------
# Per-thread work. x, y, grad_x and grad_y point to one sample unless named *_batch.
# ---------------------------------------------------------------------------------------------

cdef void _forward_block(const real_t* x, const real_t* weight, const real_t* bias, real_t* y,
                         const Geom* g, int k0, int k1, int i0, int i1, real_t beta,
                         int first_bias_row, real_t* col) noexcept nogil:
    """y[:, i0*ow:i1*ow] = beta*y[...] + weight[:, k0:k1] @ col(x)[k0:k1, i0*ow:i1*ow] (+ bias
    unless bias is NULL): a block of one sample's output from a block of its im2col matrix."""
    cdef Py_ssize_t n = (i1 - i0) * <Py_ssize_t>g.ow
    if n <= 0:
        return
    _im2col(x, col, g, k0, k1, i0, i1)
    gemm_rm(False, False, g.f, n, k1 - k0, 1, weight + k0, g.k, col, n,
            beta, y + i0 * <Py_ssize_t>g.ow, g.p)
    if bias != NULL:
        _add_bias(y + i0 * <Py_ssize_t>g.ow, bias, g.f, g.p, n, first_bias_row)


cdef void _weight_grad_block(const real_t* x, const real_t* grad_y, const real_t* grad_y_t,
                             real_t* grad_weight, real_t* grad_bias, real_t beta,
                             const Geom* g, int k0, int k1, int i0, int i1, int f0, int f1,
                             real_t* col, bint build=True) noexcept nogil:
    """grad_weight[:, k0:k1] = beta*grad_weight[:, k0:k1] + grad_y[:, P'] @ col(x)[k0:k1, P']^T
    with P' = [i0*ow, i1*ow), and grad_bias[f0:f1] += the row sums of grad_y[f0:f1, P'].

    grad_y_t, unless NULL, holds grad_y transposed ((P, F), see _transpose_pixels) at least
    on P'. OpenBLAS runs the product with both operands transposed ((P', F)^T and the im2col
    block) at 90-105 GFLOP/s per core for the homework's 64->64 layer and 5x5 blocks of 6
    channels, against 65-70 with grad_y as it is (measured with scipy's sgemm, one thread):
    the plain form takes the library's general packed path.

    Unless build is true, col already holds the block (kept from the forward pass).
    """
    cdef Py_ssize_t n = (i1 - i0) * <Py_ssize_t>g.ow
    cdef const real_t* gy = grad_y + i0 * <Py_ssize_t>g.ow
    if build:
        _im2col(x, col, g, k0, k1, i0, i1)
    if grad_y_t != NULL:
        gemm_rm(True, True, g.f, k1 - k0, <int>n, 1, grad_y_t + i0 * <Py_ssize_t>g.ow * g.f,
                g.f, col, <int>max(n, 1), beta, grad_weight + k0, g.k)
    else:
        gemm_rm(False, True, g.f, k1 - k0, <int>n, 1, gy, g.p, col, <int>max(n, 1),
                beta, grad_weight + k0, g.k)
    add_row_sums(gy + f0 * <Py_ssize_t>g.p, f1 - f0, n, g.p, grad_bias + f0)


# Elements of the im2col block that one thread builds and consumes at a time.
cdef long long _BLOCK_ELEMENTS = 1 << 14


def _set_block_elements(long long n):
    """Set the im2col block size (elements, >= 1); returns the previous one. For tests: a
    tiny block makes every geometry run through many channel blocks."""
    global _BLOCK_ELEMENTS
    if n < 1:
        raise ValueError(f"_set_block_elements: n must be >= 1; got {n}")
    old = _BLOCK_ELEMENTS
    _BLOCK_ELEMENTS = n
    return old


cdef inline int _block_channels(const Geom* g) noexcept nogil:
    """Input channels per block of im2col rows.

    One sample's whole im2col matrix of the homework's 64->64 layer is 640 KB (float32);
    with the weights (400 KB) and the weight gradient (400 KB) it overflows a 1 MB L2
    cache. Built and consumed in blocks of whole channels (so that col2im can finish them)
    of about _BLOCK_ELEMENTS, the block stays in L1/L2 between im2col and the GEMM, and
    the GEMMs, which take K in blocks of a few hundred anyway, lose nothing. Measured on
    the max-pool ConvNet (2 threads, alternating runs): 2^14 elements (6 channels of that
    layer) beat the whole matrix by 5-11% at batch 32 and 128, 2^15 by 4-6%; 2^14.6 was
    worse than 2^14."""
    cdef long long per_channel = <long long>g.kh * g.kw * g.p
    if per_channel <= 0:
        return max(g.c, 1)
    return <int>max(1, min(g.c, _BLOCK_ELEMENTS // per_channel))


cdef void _forward_channels(const real_t* x, const real_t* weight, const real_t* bias,
                            real_t* y, const Geom* g, int c0, int c1, int i0, int i1,
                            real_t* col, real_t* keep=NULL) noexcept nogil:
    """Output rows [i0, i1) of y (F, P) = weight[:, K'] @ col(x)[K', :] (+ bias unless NULL)
    for the rows K' of input channels [c0, c1), c0 < c1, in channel blocks through col; or,
    unless keep is NULL (all rows only), built in place in keep, a whole (K, P) im2col
    matrix, for the backward pass."""
    cdef int cb = _block_channels(g)
    cdef int ck = g.kh * g.kw
    cdef int a = c0, b
    while a < c1:
        b = min(c1, a + cb)
        _forward_block(x, weight, bias if b == c1 else NULL, y, g, a * ck, b * ck, i0, i1,
                       0 if a == c0 else 1, 0,
                       col if keep == NULL else keep + <Py_ssize_t>a * ck * g.p)
        a = b


cdef void _weight_grad_channels(const real_t* x, const real_t* grad_y, const real_t* grad_y_t,
                                real_t* grad_weight, real_t* grad_bias, real_t beta,
                                const Geom* g, int c0, int c1, int i0, int i1, int f0,
                                int f1, real_t* col, real_t* kept=NULL) noexcept nogil:
    """Columns K' of grad_weight = beta*grad_weight + grad_y[:, P'] @ col(x)[K', P']^T for
    the rows K' of input channels [c0, c1), c0 < c1, and the pixels P' of output rows
    [i0, i1), in channel blocks through col (or read from kept, x's whole im2col matrix,
    unless NULL: all rows only), and grad_bias[f0:f1] += the row sums of grad_y[f0:f1, P']
    (once)."""
    cdef int cb = _block_channels(g)
    cdef int ck = g.kh * g.kw
    cdef int a = c0, b
    while a < c1:
        b = min(c1, a + cb)
        _weight_grad_block(x, grad_y, grad_y_t, grad_weight, grad_bias, beta, g, a * ck,
                           b * ck, i0, i1, f0 if a == c0 else 0, f1 if a == c0 else 0,
                           col if kept == NULL else kept + <Py_ssize_t>a * ck * g.p,
                           kept == NULL)
        a = b


cdef void _input_grad_channels(const real_t* grad_y, const real_t* weight, real_t* grad_x,
                               const Geom* g, int c0, int c1, real_t* col) noexcept nogil:
    """Channels [c0, c1) of grad_x = col2im(weight^T @ grad_y), in channel blocks: the rows
    of weight^T @ grad_y for a block into col, then col2im of that block."""
    cdef int cb = _block_channels(g)
    cdef int ck = g.kh * g.kw
    cdef int a = c0, b
    while a < c1:
        b = min(c1, a + cb)
        gemm_rm(True, False, (b - a) * ck, g.p, g.f, 1, weight + a * ck, g.k, grad_y, g.p,
                0, col, g.p)
        if g.sw == 1:
            _col2im_unit_stride(col, grad_x, g, a, b, a * ck)
        else:
            _col2im(col, grad_x, g, a, b, a * ck)
        a = b


# ---------------------------------------------------------------------------------------------
# Units of work: fixed by the shapes, never by the thread count
# ---------------------------------------------------------------------------------------------

cdef enum:
    # Units a region is cut into where the work allows, so that up to this many threads
    # share it. Constants, not the thread count: the units, and so every GEMM call and every
    # partial sum, are the same whatever the thread count.
    _UNITS = 64
    # At most this many parts per sample: a batch of 1 runs in 4 units, and a batch is cut
    # into whole samples from _UNITS samples on.
    _SAMPLE_PARTS = 4
    # A row tile keeps at least this many output pixels (GEMM columns), so that cutting a
    # sample into parts never makes its GEMMs too thin to run near the library's speed.
    _TILE_PIXELS = 32


cdef inline int _ceil_div(long long a, long long b) noexcept nogil:
    return <int>((a + b - 1) // b)


cdef inline bint _forward_by_channels(const Geom* g, int n_batch) noexcept nogil:
    """Whether a sample's forward parts are input-channel groups (added up afterwards) rather
    than output-row tiles: where K > P, whose few output pixels would make row tiles thin
    GEMMs, while channel groups of whole channel blocks keep every GEMM the shape it has
    for a whole sample (one extra pass adds the groups' outputs)."""
    return g.k > g.p


cdef inline int _row_tiles_max(const Geom* g) noexcept nogil:
    """The most output-row tiles a sample is cut into: each keeps _TILE_PIXELS pixels."""
    return max(1, min(g.oh, g.p // _TILE_PIXELS))


cdef inline int _forward_parts(const Geom* g, int n_batch) noexcept nogil:
    """Parts of each sample's forward pass: min(_SAMPLE_PARTS, _UNITS / N) where the sample
    allows, so 1 from _UNITS samples on."""
    cdef int want
    if n_batch < 1:
        return 1
    want = min(<int>_SAMPLE_PARTS, _ceil_div(_UNITS, n_batch))
    return max(1, min(want, g.c if _forward_by_channels(g, n_batch) else _row_tiles_max(g)))


cdef inline int _channel_groups(const Geom* g) noexcept nogil:
    """Input-channel groups of the backward pass where K > P: one per channel block (see
    _block_channels), so that every GEMM keeps the shape it has for a whole sample, and at
    least min(C, 4)."""
    return max(1, max(min(g.c, <int>_SAMPLE_PARTS), _ceil_div(g.c, _block_channels(g))))


cdef inline int _group_start(const Geom* g, int j, int groups) noexcept nogil:
    """First input channel of channel group j of ``groups``: whole channel blocks each where
    there are no more groups than blocks, else near-equal channel counts."""
    cdef int cb = _block_channels(g)
    cdef int blocks = _ceil_div(g.c, cb)
    if groups <= blocks:
        return min(g.c, _split(blocks, j, groups) * cb)
    return _split(g.c, j, groups)


cdef inline int _sample_groups(int n_batch, int per_sample) noexcept nogil:
    """Sample groups of a weight gradient whose samples are each cut into per_sample units:
    enough for _UNITS units in all, at most one per sample. Each group sums its samples into
    a partial gradient of its own; the partials are added in group order."""
    return max(1, min(n_batch, _ceil_div(_UNITS, per_sample)))


cdef inline int _pixel_tiles(const Geom* g, int n_batch) noexcept nogil:
    """Output-row tiles of each sample group of a weight gradient cut by pixels (K <= P)."""
    return max(1, min(min(<int>_SAMPLE_PARTS, _ceil_div(_UNITS, max(n_batch, 1))),
                      _row_tiles_max(g)))


cdef inline int _input_groups(const Geom* g) noexcept nogil:
    """Input-channel groups of each sample's input gradient where K <= P."""
    return max(1, min(g.c, <int>_SAMPLE_PARTS))


cdef struct Workspace:
    # Per thread t, at t*stride: an im2col buffer (one channel block) at col. Shared: where
    # the weight gradient transposes grad_y, the whole batch's grad_y transposed ((N, P, F))
    # at grad_y_t; then n_slots partial results of a unit each, slot i at
    # slots + i*slot_stride: an (F, P) output or an (F, K) weight gradient followed by an
    # (F,) bias gradient at slot_bias.
    Py_ssize_t stride, col, grad_y_t, slots, slot_stride, slot_bias     # in elements


cdef inline real_t* _slot(real_t* ws, const Workspace* w, int i) noexcept nogil:
    return ws + w.slots + i * w.slot_stride


cdef void _add_slots(real_t* out, real_t* ws, const Workspace* w, int first, int n,
                     Py_ssize_t offset, Py_ssize_t e0, Py_ssize_t e1) noexcept nogil:
    """out[e] += slot[first][offset + e] + ... + slot[first + n - 1][offset + e], in slot
    order, for e in [e0, e1): the same sum for every element whatever range a thread takes."""
    cdef int i
    if e1 <= e0:
        return
    for i in range(first, first + n):
        _add_row(out + e0, _slot(ws, w, i) + offset + e0, e1 - e0)


cdef void _forward_part(const real_t* x, const real_t* weight, const real_t* bias, real_t* y,
                        const Geom* g, int parts, bint by_channels, int j, real_t* col,
                        real_t* out, real_t* keep) noexcept nogil:
    """Part j of the ``parts`` of one sample's forward pass (see _forward_parts).

    One part: the whole sample, channel block after channel block, bias included. Row
    tiles: rows [i0, i1) of y, every channel block, bias included. Channel groups (K > P,
    small batches): the contribution of the group's channels to all of y, into ``out`` (y
    itself for part 0, a slot otherwise), without bias; _forward_impl adds them up. Unless
    keep is NULL, the whole sample and channel parts build their im2col rows in it, the
    whole (K, P) matrix in the end.
    """
    if parts == 1:
        _forward_channels(x, weight, bias, y, g, 0, g.c, 0, g.oh, col, keep)
    elif not by_channels:
        _forward_channels(x, weight, bias, y, g, 0, g.c, _split(g.oh, j, parts),
                          _split(g.oh, j + 1, parts), col)
    else:
        _forward_channels(x, weight, NULL, out, g, _group_start(g, j, parts),
                          _group_start(g, j + 1, parts), 0, g.oh, col, keep)


cdef inline bint _keeps(const Geom* g, int n_batch, int parts) noexcept nogil:
    """Whether the forward pass can leave the last sample's whole im2col matrix (K > P)."""
    return n_batch > 0 and g.k > g.p and (parts == 1 or _forward_by_channels(g, n_batch))


cdef void _forward_units(const real_t* x, const real_t* weight, const real_t* bias, real_t* y,
                         const Geom* g, int n_batch, int parts, int u0, int u1, real_t* ws,
                         const Workspace* w, int t, real_t* keep) noexcept nogil:
    """Units [u0, u1) of the forward pass on thread t: unit u is part u % parts of sample
    u // parts; the slot of channel part j > 0 of sample n is n*(parts - 1) + j - 1."""
    cdef int u, n, j
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef bint by_channels = _forward_by_channels(g, n_batch)
    cdef double t0
    for u in range(u0, u1):
        t0 = unit_begin()
        n = u // parts
        j = u % parts
        _forward_part(x + n * xs, weight, bias, y + n * ys, g, parts, by_channels, j,
                      ws + t * w.stride + w.col,
                      y + n * ys if j == 0 else _slot(ws, w, n * (parts - 1) + j - 1),
                      keep if n == n_batch - 1 and _keeps(g, n_batch, parts) else NULL)
        unit_end(b"conv2d_forward", u, n_batch * parts, t0)


cdef void _sum_range(real_t* out, real_t* ws, const Workspace* w, int n_slots,
                     Py_ssize_t offset, Py_ssize_t e0, Py_ssize_t e1,
                     const char* region) noexcept nogil:
    """_add_slots over [e0, e1), traced as one share of a divisible region."""
    cdef double t0 = unit_begin()
    _add_slots(out, ws, w, 0, n_slots, offset, e0, e1)
    unit_end(region, 0, 0, t0)


cdef bint _forward_impl(const real_t* x, const real_t* weight, const real_t* bias, real_t* y,
                        const Geom* g, int n_batch, int T, real_t* ws,
                        const Workspace* w, real_t* keep) noexcept nogil:
    """y = conv(x) + bias for the batch: its units (_forward_parts per sample) shared by T
    threads in contiguous runs, then, for channel parts, each sample's parts added in part
    order and the bias. Unless keep is NULL, the last sample's im2col matrix is left in it
    where _keeps; returns whether it was."""
    cdef int parts = _forward_parts(g, n_batch)
    cdef int units = n_batch * parts
    cdef int t, n
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef Py_ssize_t e0, e1
    cdef double t0
    for t in prange(T, num_threads=T, schedule="static", chunksize=1):
        _forward_units(x, weight, bias, y, g, n_batch, parts, _split(units, t, T),
                       _split(units, t + 1, T), ws, w, t, keep)
    if parts > 1 and _forward_by_channels(g, n_batch):
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            t0 = unit_begin()
            for n in range(n_batch):
                e0 = _split(g.f, t, T) * <Py_ssize_t>g.p
                e1 = _split(g.f, t + 1, T) * <Py_ssize_t>g.p
                _add_slots(y + n * ys, ws, w, n * (parts - 1), parts - 1, 0, e0, e1)
                if bias != NULL:
                    _add_bias(y + n * ys + e0, bias + _split(g.f, t, T),
                              _split(g.f, t + 1, T) - _split(g.f, t, T), g.p, g.p, 0)
            unit_end(b"conv2d_forward_sum", 0, 0, t0)
    return keep != NULL and _keeps(g, n_batch, parts)


cdef void _transpose_samples(const real_t* grad_y, real_t* grad_y_t, const Geom* g,
                             int n_batch, int t, int T) noexcept nogil:
    """Share t of T of grad_y_t[n] = grad_y[n]^T ((F, P) -> (P, F)) over the batch: a pure
    copy, so how it is shared cannot change a bit."""
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef Py_ssize_t total = <Py_ssize_t>n_batch * g.p
    cdef Py_ssize_t a = total * t // T, b = total * (t + 1) // T
    cdef Py_ssize_t n, p0, p1
    cdef double t0 = unit_begin()
    n = a // g.p
    while a < b:
        p0 = a - n * g.p
        p1 = min(<Py_ssize_t>g.p, b - n * g.p)
        _transpose_pixels(grad_y + n * ys, g, p0, p1, grad_y_t + n * ys)
        a = n * g.p + p1
        n += 1
    unit_end(b"conv2d_transpose", 0, 0, t0)


cdef void _group_units(const real_t* x, const real_t* grad_y, const real_t* weight,
                       real_t* grad_x, real_t* grad_weight, real_t* grad_bias,
                       bint accumulate, const Geom* g, int n_batch, int u0, int u1,
                       real_t* col, const real_t* grad_y_t, const real_t* kept, real_t* ws,
                       const Workspace* w) noexcept nogil:
    """Units [u0, u1) of the backward pass where K > P, on one thread. Unit u is channel
    group u % G of sample group u // G (G = _channel_groups, S = _sample_groups): through
    the group's samples in order, its columns of the weight gradient and its rows of the
    bias gradient (into grad_weight and grad_bias for sample group 0, into the group's
    slot otherwise) and, unless grad_x is NULL, its channels of grad_x."""
    cdef int G = _channel_groups(g)
    cdef int S = _sample_groups(n_batch, G)
    cdef int u, s, j, n, f0, f1
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef bint transpose = _transposes_grad(g)
    cdef real_t beta = 0
    cdef real_t* gw = NULL
    cdef real_t* gb = NULL
    cdef double t0
    for u in range(u0, u1):
        t0 = unit_begin()
        s = u // G
        j = u % G
        f0 = _split(g.f, j, G)
        f1 = _split(g.f, j + 1, G)
        if grad_weight != NULL:
            if s == 0:
                gw, gb = grad_weight, grad_bias
                beta = 1 if accumulate else 0
            else:
                gw = _slot(ws, w, s - 1)
                gb = gw + w.slot_bias
                beta = 0
            if beta == 0:
                memset(gb + f0, 0, (f1 - f0) * sizeof(real_t))
        for n in range(_split(n_batch, s, S), _split(n_batch, s + 1, S)):
            if grad_weight != NULL:
                _weight_grad_channels(x + n * xs, grad_y + n * ys,
                                      grad_y_t + n * ys if transpose else NULL,
                                      gw, gb, beta, g, _group_start(g, j, G),
                                      _group_start(g, j + 1, G), 0, g.oh, f0, f1, col,
                                      <real_t*>kept if n == n_batch - 1 else NULL)
                beta = 1
            if grad_x != NULL:
                _input_grad_channels(grad_y + n * ys, weight, grad_x + n * xs, g,
                                     _group_start(g, j, G), _group_start(g, j + 1, G), col)
        unit_end(b"conv2d_backward_groups", u, S * G, t0)


cdef void _weight_grad_tiles(const real_t* x, const real_t* grad_y, const real_t* grad_y_t,
                             real_t* grad_weight, real_t* grad_bias, bint accumulate,
                             const Geom* g, int n_batch, int u0, int u1, real_t* col,
                             real_t* ws, const Workspace* w) noexcept nogil:
    """Units [u0, u1) of a weight gradient cut by pixels (K <= P) on one thread. Unit u is
    output-row tile u % R of sample group u // R (S = _sample_groups contiguous groups, R =
    _pixel_tiles); unit 0 accumulates into grad_weight and grad_bias, unit u > 0 into
    slot u - 1, which _backward_impl then adds in unit order."""
    cdef int R = _pixel_tiles(g, n_batch)
    cdef int S = _sample_groups(n_batch, R)
    cdef int u, n, i0, i1
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef bint transpose = _transposes_grad(g)
    cdef real_t beta
    cdef real_t* gw
    cdef real_t* gb
    cdef double t0
    for u in range(u0, u1):
        t0 = unit_begin()
        i0 = _split(g.oh, u % R, R)
        i1 = _split(g.oh, u % R + 1, R)
        if u == 0:
            gw, gb = grad_weight, grad_bias
            beta = 1 if accumulate else 0
        else:
            gw = _slot(ws, w, u - 1)
            gb = gw + w.slot_bias
            beta = 0
        if beta == 0:
            memset(gb, 0, g.f * sizeof(real_t))
        for n in range(_split(n_batch, u // R, S), _split(n_batch, u // R + 1, S)):
            _weight_grad_channels(x + n * xs, grad_y + n * ys,
                                  grad_y_t + n * ys if transpose else NULL,
                                  gw, gb, beta, g, 0, g.c, i0, i1, 0, g.f, col)
            beta = 1
        unit_end(b"conv2d_weight_grad_tiles", u, S * R, t0)


cdef void _input_grad_units(const real_t* grad_y, const real_t* weight, real_t* grad_x,
                            const Geom* g, int n_batch, int u0, int u1,
                            real_t* col) noexcept nogil:
    """Units [u0, u1) of an input gradient (K <= P) on one thread: channel group u % G of
    sample u // G (G = _input_groups)."""
    cdef int G = _input_groups(g)
    cdef int u, n, j
    cdef Py_ssize_t xs = <Py_ssize_t>g.c * g.h * g.w
    cdef Py_ssize_t ys = <Py_ssize_t>g.f * g.p
    cdef double t0
    for u in range(u0, u1):
        t0 = unit_begin()
        n = u // G
        j = u % G
        _input_grad_channels(grad_y + n * ys, weight, grad_x + n * xs, g, _split(g.c, j, G),
                             _split(g.c, j + 1, G), col)
        unit_end(b"conv2d_input_grad", u, n_batch * G, t0)


cdef int _weight_grad_slots(const Geom* g, int n_batch) noexcept nogil:
    """Partial weight gradients a backward pass needs: one per sample group after the first
    where K > P, one per unit after the first where K <= P."""
    cdef int R
    if n_batch == 0:
        return 0
    if g.k > g.p:
        return _sample_groups(n_batch, _channel_groups(g)) - 1
    R = _pixel_tiles(g, n_batch)
    return _sample_groups(n_batch, R) * R - 1


cdef void _backward_impl(const real_t* x, const real_t* grad_y, const real_t* weight,
                         real_t* grad_x, real_t* grad_weight, real_t* grad_bias,
                         bint accumulate, const Geom* g, int n_batch, int T,
                         real_t* ws, const Workspace* w, const real_t* kept) noexcept nogil:
    """Gradients for the batch on T threads: grad_weight and grad_bias unless grad_weight is
    NULL (then x is not read), grad_x unless it is NULL (then weight is not read). kept,
    unless NULL, is the last sample's im2col matrix as _forward_impl left it.

    Where K > P the units are (sample group, input-channel group) pairs: a group's
    weight-gradient columns, bias rows and grad_x channels need nothing from the other
    channel groups, and the sample groups' partial gradients are added in group order.
    Where K <= P the weight gradient is cut into sample groups and output-row tiles whose
    partial sums are added in unit order, then grad_x into (sample, channel group) units.
    Every unit and every sum is fixed by the shapes: any T gives the same bits.
    """
    cdef int t, units, slots, G
    cdef Py_ssize_t wsize = <Py_ssize_t>g.f * g.k
    cdef real_t* grad_y_t = ws + w.grad_y_t
    cdef double t0
    if grad_weight != NULL and n_batch == 0:
        if not accumulate:
            memset(grad_weight, 0, wsize * sizeof(real_t))
            memset(grad_bias, 0, g.f * sizeof(real_t))
        return
    if grad_weight != NULL and _transposes_grad(g):
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            _transpose_samples(grad_y, grad_y_t, g, n_batch, t, T)
    if g.k > g.p:
        G = _channel_groups(g)
        units = _sample_groups(n_batch, G) * G
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            _group_units(x, grad_y, weight, grad_x, grad_weight, grad_bias, accumulate, g,
                         n_batch, _split(units, t, T), _split(units, t + 1, T),
                         ws + t * w.stride + w.col, grad_y_t, kept, ws, w)
    elif grad_weight != NULL:
        units = _weight_grad_slots(g, n_batch) + 1
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            _weight_grad_tiles(x, grad_y, grad_y_t, grad_weight, grad_bias, accumulate, g,
                               n_batch, _split(units, t, T), _split(units, t + 1, T),
                               ws + t * w.stride + w.col, ws, w)
    slots = _weight_grad_slots(g, n_batch) if grad_weight != NULL else 0
    if slots > 0:
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            _sum_range(grad_weight, ws, w, slots, 0, _split(wsize, t, T),
                       _split(wsize, t + 1, T), b"conv2d_weight_grad_sum")
        _add_slots(grad_bias, ws, w, 0, slots, w.slot_bias, 0, g.f)
    if grad_x != NULL and g.k <= g.p:
        units = n_batch * _input_groups(g)
        for t in prange(T, num_threads=T, schedule="static", chunksize=1):
            _input_grad_units(grad_y, weight, grad_x, g, n_batch, _split(units, t, T),
                              _split(units, t + 1, T), ws + t * w.stride + w.col)


# ---------------------------------------------------------------------------------------------
# Entry points (arguments validated by fastconv.functional._conv)
# ---------------------------------------------------------------------------------------------

cdef Geom _geometry(const Py_ssize_t* x_shape, const Py_ssize_t* w_shape,
                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw) except *:
    """Sizes of a convolution of an (N, C, H, W) input by an (F, C, KH, KW) kernel.

    Geom counts in C int (as the BLAS it calls): every size and every intermediate index
    (at most the padded input extent) is checked to fit here, in 64-bit arithmetic, so that
    a geometry fastconv.functional would refuse can never wrap around in a kernel either.
    """
    cdef Geom g
    cdef Py_ssize_t oh, ow
    cdef Py_ssize_t limit = 2147483647
    if sh < 1 or sw < 1 or ph < 0 or pw < 0 or sh > limit or sw > limit \
            or x_shape[2] + 2 * ph > limit or x_shape[3] + 2 * pw > limit \
            or x_shape[2] + 2 * ph < w_shape[2] or x_shape[3] + 2 * pw < w_shape[3]:
        raise ValueError(f"conv2d: stride ({sh}, {sw}) or padding ({ph}, {pw}) out of range "
                         f"for input {x_shape[2]}x{x_shape[3]} and kernel "
                         f"{w_shape[2]}x{w_shape[3]}")
    oh = (x_shape[2] + 2 * ph - w_shape[2]) // sh + 1
    ow = (x_shape[3] + 2 * pw - w_shape[3]) // sw + 1
    if x_shape[1] * w_shape[2] * w_shape[3] > limit or oh * ow > limit or w_shape[0] > limit:
        raise ValueError(f"conv2d: geometry too large: C*KH*KW = "
                         f"{x_shape[1] * w_shape[2] * w_shape[3]}, OH*OW = {oh * ow} and "
                         f"F = {w_shape[0]} must each be <= {limit}")
    g.c, g.h, g.w = x_shape[1], x_shape[2], x_shape[3]
    g.f, g.kh, g.kw = w_shape[0], w_shape[2], w_shape[3]
    g.sh, g.sw, g.ph, g.pw = sh, sw, ph, pw
    g.oh, g.ow = oh, ow
    g.k = g.c * g.kh * g.kw
    g.p = g.oh * g.ow
    return g


cdef real_t* _workspace(const Geom* g, int T, int n_batch, bint weight_grads, int n_slots,
                        Py_ssize_t slot_elems, Workspace* w, real_t dummy) except NULL:
    """malloc T thread slices of an im2col buffer for one channel block, the batch's grad_y
    transposed where the weight gradient reads it so (weight_grads and _transposes_grad),
    and n_slots partial-result slots of slot_elems elements (an (F, K) weight gradient's slot
    also holds its (F,) bias gradient, at slot_bias), each part rounded to whole cache lines;
    raise MemoryError."""
    cdef size_t item = sizeof(real_t)
    cdef Py_ssize_t rows = min(g.k, _block_channels(g) * g.kh * g.kw)
    cdef real_t* ws
    cdef object total
    cdef int t
    w.col = _GUARD
    w.stride = _slice_size(rows * <Py_ssize_t>g.p + 2 * _GUARD, item)
    w.grad_y_t = T * w.stride
    w.slots = w.grad_y_t
    if weight_grads and _transposes_grad(g):
        w.slots += _slice_size(<Py_ssize_t>n_batch * g.f * g.p, item)
    w.slot_bias = _slice_size(slot_elems, item)
    w.slot_stride = w.slot_bias + _slice_size(g.f, item)
    total = <object>w.slots + <object>n_slots * w.slot_stride
    if T < 1 or total * item > <object>PY_SSIZE_T_MAX:
        raise MemoryError(f"conv2d: a workspace of {total} elements does not fit in memory")
    ws = <real_t*>malloc(<size_t>total * item)
    if ws == NULL:
        raise MemoryError(f"conv2d: cannot allocate a workspace of {total} elements")
    for t in range(T):
        memset(ws + t * w.stride, 0, _GUARD * item)
        memset(ws + t * w.stride + w.col + rows * g.p, 0, _GUARD * item)
    return ws


cdef real_t* _col_keep(real_t[::1] col_keep, const Geom* g, str fn) except? NULL:
    """Pointer to a buffer for one sample's im2col matrix, NULL for None; ValueError when it
    is too short."""
    if col_keep is None:
        return NULL
    if col_keep.shape[0] < <Py_ssize_t>g.k * g.p:
        raise ValueError(f"{fn}: col_keep must hold K*P = {<Py_ssize_t>g.k * g.p} elements; "
                         f"got {col_keep.shape[0]}")
    return &col_keep[0]


def conv2d_forward(const real_t[:, :, :, ::1] x,        # IN  (N, C, H, W)
                   const real_t[:, :, :, ::1] weight,   # IN  (F, C, KH, KW)
                   const real_t[::1] bias,              # IN  (F,) or None
                   real_t[:, :, :, ::1] y,              # OUT (N, F, OH, OW)
                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, int n_threads,
                   real_t[::1] col_keep=None):          # OUT (>= K*P,) or None
    """y[n,f,i,j] = bias[f] + sum_{c,u,v} weight[f,c,u,v] * x[n,c,i*sh+u-ph, j*sw+v-pw].

    col_keep, unless None, receives the im2col matrix of the last sample where K > P (the
    backward pass reads it by channel groups); returns True when it did, for conv2d_backward.
    """
    cdef Geom g = _geometry(x.shape, weight.shape, sh, sw, ph, pw)
    cdef Workspace w
    cdef real_t* ws
    cdef real_t* keep = _col_keep(col_keep, &g, "conv2d_forward")
    cdef bint kept
    cdef int parts = _forward_parts(&g, x.shape[0])
    if x.shape[0] == 0:
        return False
    ws = _workspace(&g, n_threads, x.shape[0], False,
                    x.shape[0] * (parts - 1) if parts > 1 and _forward_by_channels(&g, x.shape[0])
                    else 0,
                    <Py_ssize_t>g.f * g.p, &w, <real_t>0)
    try:
        with nogil:
            kept = _forward_impl(&x[0, 0, 0, 0], &weight[0, 0, 0, 0],
                                 &bias[0] if bias is not None else NULL, &y[0, 0, 0, 0], &g,
                                 x.shape[0], n_threads, ws, &w, keep)
    finally:
        free(ws)
    return kept


def conv2d_backward_input(const real_t[:, :, :, ::1] grad_y,   # IN  (N, F, OH, OW)
                          const real_t[:, :, :, ::1] weight,   # IN  (F, C, KH, KW)
                          real_t[:, :, :, ::1] grad_x,         # OUT (N, C, H, W)
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                          int n_threads):
    """grad_x[n,c,h,w] = sum over (f,u,v,i,j) with i*sh+u-ph = h and j*sw+v-pw = w of
    weight[f,c,u,v] * grad_y[n,f,i,j]: the adjoint of conv2d_forward without bias."""
    cdef Geom g = _geometry(grad_x.shape, weight.shape, sh, sw, ph, pw)
    cdef Workspace w
    cdef real_t* ws
    if grad_x.shape[0] == 0:
        return
    ws = _workspace(&g, n_threads, grad_x.shape[0], False, 0, 0, &w, <real_t>0)
    try:
        with nogil:
            _backward_impl(NULL, &grad_y[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_x[0, 0, 0, 0],
                           NULL, NULL, False, &g, grad_x.shape[0], n_threads, ws, &w, NULL)
    finally:
        free(ws)


def conv2d_backward(const real_t[:, :, :, ::1] x,           # IN  (N, C, H, W)
                    const real_t[:, :, :, ::1] grad_y,      # IN  (N, F, OH, OW)
                    const real_t[:, :, :, ::1] weight,      # IN  (F, C, KH, KW) or None
                    real_t[:, :, :, ::1] grad_x,            # OUT (N, C, H, W) or None
                    real_t[:, :, :, ::1] grad_weight,       # OUT (F, C, KH, KW)
                    real_t[::1] grad_bias,                  # OUT (F,)
                    bint accumulate,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                    int n_threads, real_t[::1] col_kept=None):             # IN  (>= K*P,) or None
    """grad_weight[f,c,u,v] (+)= sum_{n,i,j} grad_y[n,f,i,j] * x[n,c,i*sh+u-ph, j*sw+v-pw],
    grad_bias[f] (+)= sum_{n,i,j} grad_y[n,f,i,j], the sums added to the arrays' contents when
    accumulate is true; and, unless grad_x is None, grad_x as in conv2d_backward_input.

    weight is read only for grad_x, and may be None when grad_x is. col_kept, unless None,
    is what conv2d_forward left in col_keep for this x when it returned True: the caller
    vouches for that; the weight gradient then reads the last sample's im2col rows from it.
    """
    cdef Geom g = _geometry(x.shape, grad_weight.shape, sh, sw, ph, pw)
    cdef real_t* kept = _col_keep(col_kept, &g, "conv2d_backward")
    cdef int n_batch = x.shape[0]
    cdef bint with_x = grad_x is not None
    cdef Workspace w
    cdef real_t* ws = _workspace(&g, n_threads, n_batch, True, _weight_grad_slots(&g, n_batch),
                                 <Py_ssize_t>g.f * g.k, &w, <real_t>0)
    try:
        with nogil:
            _backward_impl(&x[0, 0, 0, 0] if n_batch > 0 else NULL,
                           &grad_y[0, 0, 0, 0] if n_batch > 0 else NULL,
                           &weight[0, 0, 0, 0] if with_x else NULL,
                           &grad_x[0, 0, 0, 0] if with_x and n_batch > 0 else NULL,
                           &grad_weight[0, 0, 0, 0], &grad_bias[0], accumulate, &g, n_batch,
                           n_threads, ws, &w, kept)
    finally:
        free(ws)
