"""Spatial pooling kernels: max pooling (with arg-max), Lp pooling and average pooling.

Design
------
(a) Ops. ``max_pool2d_forward`` / ``max_pool2d_backward`` (Torch7 SpatialMaxPooling, no padding,
    floor mode) and ``lp_pool2d_forward`` / ``lp_pool2d_backward`` (Torch7 SpatialLPPooling:
    the *sum* of x^p over the window, then the 1/p-th power; p = 2 is the homework's L2 pooling)
    and ``avg_pool2d_forward`` / ``avg_pool2d_backward`` (PyTorch AvgPool2d without padding:
    the window mean).
(b) Layout and dtypes. NCHW, C-contiguous, ``real_t`` (float32 or float64); arg-max indices are
    ``Py_ssize_t`` (np.intp), the flat offset ``i*W + j`` inside the input's (n, c) plane.
(c) Threading. Every op parallelizes over the N*C planes with a static ``prange``. Each plane's
    output (forward) and gradient (backward) is written by exactly one thread, so there is no
    racy accumulation, and the result is bitwise independent of the thread count. Work below
    ``SERIAL_BELOW // 2`` elements runs serially (half the shared threshold: an element costs
    a window of loads).
(d) Vectorization. Branchy scalar pooling was measured at 25-35% of a training step, so every
    inner loop is straight-line code over an output row that gcc can if-convert and vectorize:
    the arg-max update is a pair of selects, never a branch. The hot 2x2/2 window has its own
    path that reads two input rows per output row, in fixed-length spans so that no scalar
    (branchy) remainder runs (see _SPAN); other windows sweep the kernel taps in the outer
    loops and the output row in the innermost loop. Max backward is a plain scatter-add.
(e) Saved for backward. Max pooling saves the arg-max ``indices`` (shaped like y). Lp pooling
    saves nothing extra: its backward takes x and y. Average pooling saves nothing: its
    backward needs only grad_out and the input's shape.
(f) Safety. Shapes and hyperparameters are checked by ``fastconv.functional`` before these run;
    ``max_pool2d_backward`` additionally range-checks every index inside the kernel (one pass,
    no extra sweep over the indices) and reports the count of bad ones instead of writing.
"""
from cython.parallel cimport prange
from libc.math cimport pow, powf, sqrt, sqrtf
from libc.string cimport memset

from ._types cimport real_t

from ._openmp cimport SERIAL_BELOW
from ._trace cimport trace_active, unit_begin, unit_end


cdef extern from *:
    """
    /* Does v replace the running maximum m?  Strictly greater keeps the first of tied maxima;
       a NaN beats any number but not an earlier NaN, so NaN propagates and the first NaN is
       reported.  Written in C, in this form, because gcc 12 if-converts and vectorizes it,
       while Cython's rendering of the same test (temporaries, short-circuit gotos) was left
       scalar. */
    #define FC_POOL_BEATS(v, m) (!((v) <= (m) || (m) != (m)))
    """
    bint _beats_f "FC_POOL_BEATS" (float v, float m) noexcept nogil
    bint _beats_d "FC_POOL_BEATS" (double v, double m) noexcept nogil


cdef inline bint _beats(real_t v, real_t m) noexcept nogil:
    if real_t is float:
        return _beats_f(v, m)
    else:
        return _beats_d(v, m)


cdef inline real_t _pow(real_t v, double p) noexcept nogil:
    if real_t is float:
        return powf(v, <float>p)
    else:
        return pow(v, p)


cdef inline real_t _sqrt(real_t v) noexcept nogil:
    if real_t is float:
        return sqrtf(v)
    else:
        return sqrt(v)


cdef inline int _team(Py_ssize_t work, int n_threads) noexcept nogil:
    return n_threads if work >= SERIAL_BELOW // 2 else 1


# One dispatcher runs every op plane by plane, on a team or serially: each op's work on one
# (n, c) plane is a _plane case, written once.
cdef enum _Op:
    _MAX_FORWARD
    _MAX_BACKWARD
    _LP_FORWARD
    _LP_BACKWARD
    _AVG_FORWARD
    _AVG_BACKWARD


cdef struct _Planes:
    # What every plane of one call shares: the geometry, p, and the arrays that are not
    # real_t (indices) or are read-only inputs of either dtype (x, as void*).
    Py_ssize_t planes, h, w, oh, ow, kh, kw, sh, sw
    double p
    const void* x               # (N, C, H, W) input, or NULL
    Py_ssize_t* idx             # (N, C, OH, OW) arg-max indices, or NULL


cdef _Planes _planes(const Py_ssize_t* in_shape, const Py_ssize_t* out_shape, Py_ssize_t kh,
                     Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, double p) noexcept:
    cdef _Planes a
    a.planes = in_shape[0] * in_shape[1]
    a.h, a.w, a.oh, a.ow = in_shape[2], in_shape[3], out_shape[2], out_shape[3]
    a.kh, a.kw, a.sh, a.sw, a.p = kh, kw, sh, sw, p
    a.x, a.idx = NULL, NULL
    return a


cdef inline Py_ssize_t _plane(_Op op, const _Planes* a, Py_ssize_t pl, const real_t* g,
                              real_t* y, real_t* gx) noexcept nogil:
    """Plane pl of op: g is grad_out (or NULL), y the (N, C, OH, OW) output or, in Lp
    backward, the forward output; gx the (N, C, H, W) gradient. Returns the count of bad
    indices (max backward), else 0."""
    cdef Py_ssize_t hw = a.h * a.w, ohw = a.oh * a.ow
    cdef const real_t* xp = <const real_t*>a.x + pl * hw if a.x != NULL else NULL
    if op == _MAX_FORWARD:
        _max_fwd_plane(xp, y + pl * ohw, a.idx + pl * ohw if a.idx != NULL else NULL, a.w,
                       a.oh, a.ow, a.kh, a.kw, a.sh, a.sw)
    elif op == _MAX_BACKWARD:
        return _max_bwd_scatter(g + pl * ohw, a.idx + pl * ohw, gx + pl * hw, hw, ohw)
    elif op == _LP_FORWARD:
        _lp_fwd_plane(xp, y + pl * ohw, a.p, a.w, a.oh, a.ow, a.kh, a.kw, a.sh, a.sw)
    elif op == _LP_BACKWARD:
        _lp_bwd_plane(xp, y + pl * ohw, g + pl * ohw, gx + pl * hw, a.p, a.h, a.w, a.oh, a.ow,
                      a.kh, a.kw, a.sh, a.sw)
    elif op == _AVG_FORWARD:
        _avg_fwd_plane(xp, y + pl * ohw, a.w, a.oh, a.ow, a.kh, a.kw, a.sh, a.sw)
    else:
        _avg_bwd_plane(g + pl * ohw, gx + pl * hw, a.h, a.w, a.oh, a.ow, a.kh, a.kw, a.sh,
                       a.sw)
    return 0


cdef Py_ssize_t _by_planes(_Op op, const _Planes* a, const real_t* g, real_t* y, real_t* gx,
                           int n_threads) noexcept nogil:
    """Run op over every plane; planes are independent, so the split never changes a
    result. Returns the summed count of bad indices."""
    cdef Py_ssize_t pl
    cdef Py_ssize_t bad = 0
    cdef int nt = _team(a.planes * a.h * a.w, n_threads)
    cdef double t0
    if nt > 1 or (trace_active() and _team(a.planes * a.h * a.w, 2) > 1):
        for pl in prange(a.planes, schedule='static', num_threads=nt):
            t0 = unit_begin()
            bad += _plane(op, a, pl, g, y, gx)
            unit_end(b"pool_planes", pl, a.planes, t0)
    else:
        for pl in range(a.planes):
            bad += _plane(op, a, pl, g, y, gx)
    return bad


# --------------------------------------------------------------------------------------------
# Max pooling
# --------------------------------------------------------------------------------------------

cdef enum:
    # Outputs per span of the 2x2/2 max paths (see _SPAN note below).
    _SPAN = 8

# Why spans: gcc vectorizes a row loop of unknown length but finishes it with a scalar
# remainder, and there the selects turn back into branches that mispredict on real data. For
# the ConvNet's 28x28 -> 14x14 layer that remainder was 6 of 14 outputs and made the layer 5x
# slower once the data no longer fit the branch predictor's history. So a row is covered by
# one run whose length is a multiple of 2*_SPAN (full-width vectors, the remainder never
# runs), then spans of exactly _SPAN outputs (a fixed trip count: vector, no remainder); the
# last span is shifted back to end at the row's end and recomputes a few outputs, which is
# harmless because each output is a pure function of its window. Rows shorter than _SPAN
# (the 10x10 -> 5x5 layer) stay scalar.


cdef inline void _max_span_2x2(const real_t* r0, const real_t* r1, real_t* yr, Py_ssize_t* ir,
                               Py_ssize_t base, Py_ssize_t w, Py_ssize_t j0,
                               Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j, k
    cdef real_t b, c, d, m
    cdef bint up
    for j in range(j0, j0 + n):
        m = r0[2 * j]
        b = r0[2 * j + 1]
        c = r1[2 * j]
        d = r1[2 * j + 1]
        k = 0
        up = _beats(b, m)
        m = b if up else m
        k = 1 if up else k
        up = _beats(c, m)
        m = c if up else m
        k = w if up else k
        up = _beats(d, m)
        m = d if up else m
        k = w + 1 if up else k
        yr[j] = m
        ir[j] = base + 2 * j + k


cdef inline void _max_span_2x2_noidx(const real_t* r0, const real_t* r1, real_t* yr,
                                     Py_ssize_t j0, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef real_t b, c, d, m
    for j in range(j0, j0 + n):
        m = r0[2 * j]
        b = r0[2 * j + 1]
        c = r1[2 * j]
        d = r1[2 * j + 1]
        m = b if _beats(b, m) else m
        m = c if _beats(c, m) else m
        m = d if _beats(d, m) else m
        yr[j] = m


cdef void _max_fwd_2x2(const real_t* xp, real_t* yp, Py_ssize_t* ip, Py_ssize_t w,
                       Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    cdef Py_ssize_t i, j0, base
    cdef const real_t* r0
    cdef const real_t* r1
    cdef real_t* yr
    cdef Py_ssize_t* ir
    for i in range(oh):
        base = 2 * i * w
        r0 = xp + base
        r1 = r0 + w
        yr = yp + i * ow
        ir = ip + i * ow
        if ow < _SPAN:
            _max_span_2x2(r0, r1, yr, ir, base, w, 0, ow)
            continue
        j0 = ow - ow % (2 * _SPAN)
        if j0:
            _max_span_2x2(r0, r1, yr, ir, base, w, 0, j0)
        while j0 + _SPAN <= ow:
            _max_span_2x2(r0, r1, yr, ir, base, w, j0, _SPAN)
            j0 += _SPAN
        if j0 < ow:
            _max_span_2x2(r0, r1, yr, ir, base, w, ow - _SPAN, _SPAN)


cdef void _max_fwd_2x2_noidx(const real_t* xp, real_t* yp, Py_ssize_t w,
                             Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    cdef Py_ssize_t i, j0
    cdef const real_t* r0
    cdef const real_t* r1
    cdef real_t* yr
    for i in range(oh):
        r0 = xp + 2 * i * w
        r1 = r0 + w
        yr = yp + i * ow
        if ow < _SPAN:
            _max_span_2x2_noidx(r0, r1, yr, 0, ow)
            continue
        j0 = ow - ow % (2 * _SPAN)
        if j0:
            _max_span_2x2_noidx(r0, r1, yr, 0, j0)
        while j0 + _SPAN <= ow:
            _max_span_2x2_noidx(r0, r1, yr, j0, _SPAN)
            j0 += _SPAN
        if j0 < ow:
            _max_span_2x2_noidx(r0, r1, yr, ow - _SPAN, _SPAN)


cdef void _max_fwd_generic(const real_t* xp, real_t* yp, Py_ssize_t* ip, Py_ssize_t w,
                           Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                           Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    # Taps (u, v) in row-major order outside, the output row inside: each output sees its
    # window in row-major order, so "first maximum wins" holds, and the inner loop vectorizes.
    cdef Py_ssize_t i, j, u, v, off
    cdef const real_t* r
    cdef real_t* yr
    cdef Py_ssize_t* ir = NULL
    cdef real_t val
    cdef bint up
    cdef bint want_idx = ip != NULL
    for i in range(oh):
        yr = yp + i * ow
        off = i * sh * w
        r = xp + off
        for j in range(ow):
            yr[j] = r[j * sw]
        if want_idx:
            ir = ip + i * ow
            for j in range(ow):
                ir[j] = off + j * sw
        for u in range(kh):
            for v in range(kw):
                off = (i * sh + u) * w + v
                r = xp + off
                if want_idx:
                    for j in range(ow):
                        val = r[j * sw]
                        up = _beats(val, yr[j])
                        yr[j] = val if up else yr[j]
                        ir[j] = off + j * sw if up else ir[j]
                else:
                    for j in range(ow):
                        val = r[j * sw]
                        yr[j] = val if _beats(val, yr[j]) else yr[j]


cdef void _max_fwd_plane(const real_t* xp, real_t* yp, Py_ssize_t* ip, Py_ssize_t w,
                         Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:
        if ip != NULL:
            _max_fwd_2x2(xp, yp, ip, w, oh, ow)
        else:
            _max_fwd_2x2_noidx(xp, yp, w, oh, ow)
    else:
        _max_fwd_generic(xp, yp, ip, w, oh, ow, kh, kw, sh, sw)


def max_pool2d_forward(const real_t[:, :, :, ::1] x,        # IN  (N, C, H, W)
                       real_t[:, :, :, ::1] y,              # OUT (N, C, OH, OW)
                       Py_ssize_t[:, :, :, ::1] indices,    # OUT (N, C, OH, OW) or None
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       int n_threads):
    """y[n,c,i,j] = max_{u<kh, v<kw} x[n,c,i*sh+u, j*sw+v]; indices = flat arg-max i'*W + j'.

    Ties go to the first maximum in row-major window order; a NaN wins. ``indices`` may be
    None when the caller does not need them. Sizes are checked by the caller (non-empty).
    """
    cdef _Planes a = _planes(x.shape, y.shape, kh, kw, sh, sw, 0)
    a.x = &x[0, 0, 0, 0]
    a.idx = &indices[0, 0, 0, 0] if indices is not None else NULL
    with nogil:
        _by_planes(_MAX_FORWARD, &a, NULL, &y[0, 0, 0, 0], NULL, n_threads)


cdef Py_ssize_t _max_bwd_scatter(const real_t* gp, const Py_ssize_t* ip, real_t* gxp,
                                 Py_ssize_t hw, Py_ssize_t ohw) noexcept nogil:
    # Zero, then add in output order: right for any window, overlapping or not, and for any
    # in-range index. A select-based 2x2 gather was tried and measured 4-16x slower than this
    # (its selects became mispredicted branches), so the scatter is also the 2x2 path; its
    # range test is a branch that real indices always predict. Returns the number of
    # out-of-range indices, which are skipped.
    cdef Py_ssize_t o, k
    cdef Py_ssize_t bad = 0
    memset(gxp, 0, hw * sizeof(real_t))
    for o in range(ohw):
        k = ip[o]
        if k < 0 or k >= hw:
            bad += 1
        else:
            gxp[k] += gp[o]
    return bad


def max_pool2d_backward(const real_t[:, :, :, ::1] grad_out,       # IN  (N, C, OH, OW)
                        const Py_ssize_t[:, :, :, ::1] indices,    # IN  (N, C, OH, OW)
                        real_t[:, :, :, ::1] grad_x,               # OUT (N, C, H, W)
                        int n_threads):
    """grad_x[n,c].flat[indices[n,c,i,j]] += grad_out[n,c,i,j]; grad_x is 0 elsewhere.

    Returns the number of indices outside ``[0, H*W)``; those are skipped, never written.
    """
    cdef _Planes a = _planes(grad_x.shape, grad_out.shape, 1, 1, 1, 1, 0)
    cdef Py_ssize_t bad
    a.idx = <Py_ssize_t*>&indices[0, 0, 0, 0]    # read only
    with nogil:
        bad = _by_planes(_MAX_BACKWARD, &a, &grad_out[0, 0, 0, 0], NULL, &grad_x[0, 0, 0, 0],
                         n_threads)
    return bad


# --------------------------------------------------------------------------------------------
# Lp pooling
# --------------------------------------------------------------------------------------------

cdef void _l2_fwd_2x2(const real_t* xp, real_t* yp, Py_ssize_t w,
                      Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    # Same summation order as the generic path (taps in row-major order), so both paths
    # agree bitwise.
    cdef Py_ssize_t i, j
    cdef const real_t* r0
    cdef const real_t* r1
    cdef real_t* yr
    cdef real_t a, b, c, d
    for i in range(oh):
        r0 = xp + 2 * i * w
        r1 = r0 + w
        yr = yp + i * ow
        for j in range(ow):
            a = r0[2 * j]
            b = r0[2 * j + 1]
            c = r1[2 * j]
            d = r1[2 * j + 1]
            yr[j] = _sqrt(a * a + b * b + c * c + d * d)


cdef void _lp_fwd_generic(const real_t* xp, real_t* yp, double p, Py_ssize_t w,
                          Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                          Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    # The output row doubles as the accumulator; taps outside, output row inside.
    cdef Py_ssize_t i, j, u, v
    cdef const real_t* r
    cdef real_t* yr
    cdef real_t t
    # p = 1 (average pooling's window sum too) adds x itself: pow(v, 1) is v exactly.
    cdef real_t inv_p = <real_t>(1.0 / p)
    cdef bint square = p == 2.0
    cdef bint linear = p == 1.0
    for i in range(oh):
        yr = yp + i * ow
        for j in range(ow):
            yr[j] = 0
        for u in range(kh):
            for v in range(kw):
                r = xp + (i * sh + u) * w + v
                if square:
                    for j in range(ow):
                        t = r[j * sw]
                        yr[j] += t * t
                elif linear:
                    for j in range(ow):
                        yr[j] += r[j * sw]
                else:
                    for j in range(ow):
                        yr[j] += _pow(r[j * sw], p)
        if square:
            for j in range(ow):
                yr[j] = _sqrt(yr[j])
        elif not linear:
            for j in range(ow):
                yr[j] = _pow(yr[j], inv_p)


cdef void _lp_fwd_plane(const real_t* xp, real_t* yp, double p, Py_ssize_t w,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    if p == 2.0 and kh == 2 and kw == 2 and sh == 2 and sw == 2:
        _l2_fwd_2x2(xp, yp, w, oh, ow)
    else:
        _lp_fwd_generic(xp, yp, p, w, oh, ow, kh, kw, sh, sw)


def lp_pool2d_forward(const real_t[:, :, :, ::1] x,    # IN  (N, C, H, W)
                      real_t[:, :, :, ::1] y,          # OUT (N, C, OH, OW)
                      double p,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      int n_threads):
    """y[n,c,i,j] = (Σ_{u<kh, v<kw} x[n,c,i*sh+u, j*sw+v]^p)^(1/p); p = 2 uses sqrt(Σ x²)."""
    cdef _Planes a = _planes(x.shape, y.shape, kh, kw, sh, sw, p)
    a.x = &x[0, 0, 0, 0]
    with nogil:
        _by_planes(_LP_FORWARD, &a, NULL, &y[0, 0, 0, 0], NULL, n_threads)


cdef void _l2_bwd_2x2(const real_t* xp, const real_t* yp, const real_t* gp, real_t* gxp,
                      Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    # Non-overlapping windows: each element of grad_x is written exactly once, no zero pass.
    cdef Py_ssize_t i, j
    cdef const real_t* x0
    cdef const real_t* x1
    cdef real_t* g0
    cdef real_t* g1
    cdef real_t yv, s
    for i in range(oh):
        x0 = xp + 2 * i * w
        x1 = x0 + w
        g0 = gxp + 2 * i * w
        g1 = g0 + w
        for j in range(ow):
            yv = yp[i * ow + j]
            s = gp[i * ow + j] / yv if yv != 0 else 0
            g0[2 * j] = s * x0[2 * j]
            g0[2 * j + 1] = s * x0[2 * j + 1]
            g1[2 * j] = s * x1[2 * j]
            g1[2 * j + 1] = s * x1[2 * j + 1]
        for j in range(2 * ow, w):
            g0[j] = 0
            g1[j] = 0
    if 2 * oh < h:
        memset(gxp + 2 * oh * w, 0, (h - 2 * oh) * w * sizeof(real_t))


cdef void _lp_bwd_generic(const real_t* xp, const real_t* yp, const real_t* gp, real_t* gxp,
                          double p, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                          Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                          Py_ssize_t sw) noexcept nogil:
    # Overlapping windows add into grad_x in output order: deterministic, and race-free
    # because the whole plane belongs to one thread. y^(1-p) is computed once per output.
    cdef Py_ssize_t i, j, u, v
    cdef const real_t* xr
    cdef real_t* gr
    cdef real_t yv, s
    cdef bint square = p == 2.0
    cdef bint linear = p == 1.0
    memset(gxp, 0, h * w * sizeof(real_t))
    for i in range(oh):
        for j in range(ow):
            yv = yp[i * ow + j]
            if linear:
                s = gp[i * ow + j]
            elif yv == 0:
                s = 0
            elif square:
                s = gp[i * ow + j] / yv
            else:
                s = gp[i * ow + j] * _pow(yv, 1.0 - p)
            for u in range(kh):
                xr = xp + (i * sh + u) * w + j * sw
                gr = gxp + (i * sh + u) * w + j * sw
                if square:
                    for v in range(kw):
                        gr[v] += s * xr[v]
                elif linear:
                    for v in range(kw):
                        gr[v] += s
                else:
                    for v in range(kw):
                        gr[v] += s * _pow(xr[v], p - 1.0)


cdef void _lp_bwd_plane(const real_t* xp, const real_t* yp, const real_t* gp, real_t* gxp,
                        double p, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                        Py_ssize_t sw) noexcept nogil:
    if p == 2.0 and kh == 2 and kw == 2 and sh == 2 and sw == 2:
        _l2_bwd_2x2(xp, yp, gp, gxp, h, w, oh, ow)
    else:
        _lp_bwd_generic(xp, yp, gp, gxp, p, h, w, oh, ow, kh, kw, sh, sw)


def lp_pool2d_backward(const real_t[:, :, :, ::1] x,           # IN  (N, C, H, W)
                       const real_t[:, :, :, ::1] y,           # IN  (N, C, OH, OW)
                       const real_t[:, :, :, ::1] grad_out,    # IN  (N, C, OH, OW)
                       real_t[:, :, :, ::1] grad_x,            # OUT (N, C, H, W)
                       double p,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       int n_threads):
    """grad_x[n,c,a,b] = Σ_{windows (i,j) ∋ (a,b)} grad_out[n,c,i,j] · x[n,c,a,b]^(p-1) · y[n,c,i,j]^(1-p).

    Where y = 0 and p > 1 (y^(1-p) infinite) the window contributes 0, a valid subgradient
    for x >= 0; for p = 1 the map is linear and the factor is exactly 1.
    """
    cdef _Planes a = _planes(x.shape, y.shape, kh, kw, sh, sw, p)
    a.x = &x[0, 0, 0, 0]
    with nogil:
        _by_planes(_LP_BACKWARD, &a, &grad_out[0, 0, 0, 0], &y[0, 0, 0, 0],
                   &grad_x[0, 0, 0, 0], n_threads)


# --------------------------------------------------------------------------------------------
# Average pooling
# --------------------------------------------------------------------------------------------

cdef void _avg_fwd_plane(const real_t* xp, real_t* yp, Py_ssize_t w, Py_ssize_t oh,
                         Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                         Py_ssize_t sw) noexcept nogil:
    # The window sums are Lp pooling's with p = 1; then one scale by 1/(kh*kw).
    cdef Py_ssize_t o
    cdef real_t scale = <real_t>(1.0 / <double>(kh * kw))
    _lp_fwd_generic(xp, yp, 1.0, w, oh, ow, kh, kw, sh, sw)
    for o in range(oh * ow):
        yp[o] *= scale


def avg_pool2d_forward(const real_t[:, :, :, ::1] x,    # IN  (N, C, H, W)
                       real_t[:, :, :, ::1] y,          # OUT (N, C, OH, OW)
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       int n_threads):
    """y[n,c,i,j] = (1/(kh*kw)) Σ_{u<kh, v<kw} x[n,c,i*sh+u, j*sw+v]."""
    cdef _Planes a = _planes(x.shape, y.shape, kh, kw, sh, sw, 0)
    a.x = &x[0, 0, 0, 0]
    with nogil:
        _by_planes(_AVG_FORWARD, &a, NULL, &y[0, 0, 0, 0], NULL, n_threads)


cdef void _avg_bwd_plane(const real_t* gp, real_t* gxp, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t sh, Py_ssize_t sw) noexcept nogil:
    # Zero, then add each scaled output gradient to its window, taps outside and the output
    # row inside: overlapping windows add in a fixed order, and the plane is one thread's.
    cdef Py_ssize_t i, j, u, v
    cdef const real_t* gr
    cdef real_t* xr
    cdef real_t scale = <real_t>(1.0 / <double>(kh * kw))
    memset(gxp, 0, h * w * sizeof(real_t))
    for i in range(oh):
        gr = gp + i * ow
        for u in range(kh):
            for v in range(kw):
                xr = gxp + (i * sh + u) * w + v
                for j in range(ow):
                    xr[j * sw] += gr[j] * scale


def avg_pool2d_backward(const real_t[:, :, :, ::1] grad_out,    # IN  (N, C, OH, OW)
                        real_t[:, :, :, ::1] grad_x,            # OUT (N, C, H, W)
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        int n_threads):
    """grad_x[n,c,a,b] = (1/(kh*kw)) Σ_{windows (i,j) ∋ (a,b)} grad_out[n,c,i,j]."""
    cdef _Planes a = _planes(grad_x.shape, grad_out.shape, kh, kw, sh, sw, 0)
    with nogil:
        _by_planes(_AVG_BACKWARD, &a, &grad_out[0, 0, 0, 0], NULL, &grad_x[0, 0, 0, 0],
                   n_threads)
