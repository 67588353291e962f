# Torch7 local normalizations: SpatialSubtractiveNormalization and
# SpatialContrastiveNormalization (subtractive, then SpatialDivisiveNormalization).
#
# Ops        With kn the averaging kernel scaled to sum 1 (a 1-D kernel k of length K acts as
#            the separable kn[u, v] = k[u] k[v] / (sum k)^2, as Torch's two convolutions do),
#            corr(p)[i, j] = sum_{u,v} kn[u, v] p[i+u-ph, j+v-pw] zero padded ('same' size),
#            and the border coefficient a = corr(ones) (1 inside, < 1 near the edges):
#              subtractive  m = corr(sum_c x_c) / (C a),      y_c = x_c - m
#              divisive     s = sqrt(corr(sum_c z_c^2) / C) / a,
#                           d = s if s > threshold else threshold,   y_c = z_c / d
#              contrastive  y = divisive(subtractive(x))
#            This is exactly Torch's graph (padding, per-channel convolutions with the kernel
#            divided by its sum times nInputPlane, Sum over planes, Replicate, division by
#            the coefficient computed on an all-ones input, Sqrt, Threshold(th, th)): the
#            per-channel convolutions are summed before convolving, which is the same linear
#            map at 1/C of the cost. Torch's divisive part divides sqrt(...) by a, not the
#            mean square: kept as is. Backward propagates through m, s and the threshold
#            mask (gradient 0 where the threshold value is used, as nn.Threshold does).
# Layout     NCHW, C-contiguous. The kernel arrives flattened, already scaled to sum 1,
#            with its flipped copy for the adjoint corr^T (odd sizes: flipping keeps the
#            same padding). coef (h*w) is computed once per call.
# Dtypes     real_t (float32 / float64) for data, kernel and all scratch; the threshold
#            arrives as double.
# Threading  Subtractive normalization runs in three phases, each a region of units fixed by
#            the shapes: (sample, channel group) partial channel sums, G = min(C, 64 / N)
#            groups per sample (one from 64 samples on); per sample, the groups' sums added
#            in group order and the correlation; (sample, channel group) subtraction. The
#            contrastive ops prange over samples (the divisive part couples the channels
#            twice): each thread owns 4 scratch planes of work[tid]. A sample's arithmetic
#            never depends on which thread runs it, so results are bitwise identical for
#            any thread count. Tiny batches run serially.
# Saved      Nothing: backward recomputes the local statistics from x (two extra 'same'
#            correlations per sample), which keeps the functional API stateless.
from cython.parallel cimport prange
from libc.math cimport sqrt

import numpy as np

from ._types cimport real_t
from ._openmp cimport fc_omp_thread_num
from ._trace cimport trace_active, unit_begin, unit_end

# Below this many multiply-adds a thread team costs more than it saves.
cdef Py_ssize_t _PARALLEL_MIN_WORK = 32768

cdef inline bint _parallel(Py_ssize_t n, Py_ssize_t c, Py_ssize_t taps, Py_ssize_t hw,
                           int n_threads) noexcept:
    """Whether a call runs its samples on a team (on one thread while a trace is on)."""
    return ((n_threads > 1 or trace_active()) and n > 1
            and n * (c + taps) * hw >= _PARALLEL_MIN_WORK)


cdef enum:
    SUB_FORWARD = 0
    SUB_BACKWARD = 1
    CONTRAST_FORWARD = 2
    CONTRAST_BACKWARD = 3


cdef void _corr_same(const real_t* src, real_t* dst, real_t* tmp,
                     Py_ssize_t h, Py_ssize_t w, const real_t* k,
                     Py_ssize_t kh, Py_ssize_t kw, bint separable) noexcept nogil:
    """dst[i,j] = sum_{u,v} k[u,v] src[i+u-ph, j+v-pw], zero outside src."""
    cdef Py_ssize_t i, j, u, v, ii, off, j0, j1
    cdef Py_ssize_t ph = kh // 2, pw = kw // 2
    cdef real_t kv
    cdef real_t* buf = tmp if separable else dst
    # Loops clip the column range per tap instead of testing each pixel, so the innermost
    # loop is a branch-free axpy gcc vectorizes.
    for i in range(h):
        for j in range(w):
            buf[i * w + j] = 0
        for u in range(kh if not separable else 1):
            ii = i + u - ph if not separable else i
            if ii < 0 or ii >= h:
                continue
            for v in range(kw):
                kv = k[u * kw + v] if not separable else k[v]
                off = v - pw
                j0 = -off if off < 0 else 0
                j1 = w - off if off > 0 else w
                for j in range(j0, j1):
                    buf[i * w + j] += kv * src[ii * w + j + off]
    if not separable:
        return
    for i in range(h):
        for j in range(w):
            dst[i * w + j] = 0
        for u in range(kh):
            ii = i + u - ph
            if ii < 0 or ii >= h:
                continue
            kv = k[u]
            for j in range(w):
                dst[i * w + j] += kv * tmp[ii * w + j]


cdef void _sub_forward(const real_t* x, real_t* y, real_t* work, const real_t* coef,
                       const real_t* k, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                       Py_ssize_t kh, Py_ssize_t kw, bint sep) noexcept nogil:
    """y_c = x_c - corr(sum_c x_c) / (C coef); y may alias x."""
    cdef Py_ssize_t hw = h * w, ch, j
    cdef real_t* s = work
    cdef real_t* m = work + hw
    cdef real_t* tmp = work + 3 * hw
    for j in range(hw):
        s[j] = x[j]
    for ch in range(1, c):
        for j in range(hw):
            s[j] += x[ch * hw + j]
    _corr_same(s, m, tmp, h, w, k, kh, kw, sep)
    for j in range(hw):
        m[j] = m[j] / (c * coef[j])
    for ch in range(c):
        for j in range(hw):
            y[ch * hw + j] = x[ch * hw + j] - m[j]


cdef void _sub_backward(const real_t* grad_out, real_t* grad_x, real_t* work,
                        const real_t* coef, const real_t* k_t, Py_ssize_t c, Py_ssize_t h,
                        Py_ssize_t w, Py_ssize_t kh, Py_ssize_t kw, bint sep) noexcept nogil:
    """grad_x_c = g_c - corr^T(sum_c g_c / (C coef)); grad_x may alias grad_out."""
    cdef Py_ssize_t hw = h * w, ch, j
    cdef real_t* s = work
    cdef real_t* m = work + hw
    cdef real_t* tmp = work + 3 * hw
    for j in range(hw):
        s[j] = grad_out[j]
    for ch in range(1, c):
        for j in range(hw):
            s[j] += grad_out[ch * hw + j]
    for j in range(hw):
        s[j] = s[j] / (c * coef[j])
    _corr_same(s, m, tmp, h, w, k_t, kh, kw, sep)
    for ch in range(c):
        for j in range(hw):
            grad_x[ch * hw + j] = grad_out[ch * hw + j] - m[j]


cdef void _local_sum_sq(const real_t* z, real_t* work, const real_t* k, Py_ssize_t c,
                     Py_ssize_t h, Py_ssize_t w, Py_ssize_t kh, Py_ssize_t kw,
                     bint sep) noexcept nogil:
    """work plane 1 := corr(sum_c z_c^2) (Torch's local sum of squares before the sqrt)."""
    cdef Py_ssize_t hw = h * w, ch, j
    cdef real_t* s = work
    for j in range(hw):
        s[j] = z[j] * z[j]
    for ch in range(1, c):
        for j in range(hw):
            s[j] += z[ch * hw + j] * z[ch * hw + j]
    _corr_same(s, work + hw, work + 3 * hw, h, w, k, kh, kw, sep)


cdef void _div_forward(const real_t* z, real_t* y, real_t* work, const real_t* coef,
                       const real_t* k, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                       Py_ssize_t kh, Py_ssize_t kw, bint sep, double threshold) noexcept nogil:
    """y_c = z_c / d, d = max-threshold(sqrt(corr(sum_c z_c^2) / C) / coef); y may alias z."""
    cdef Py_ssize_t hw = h * w, ch, j
    cdef real_t* m = work + hw
    cdef real_t std
    _local_sum_sq(z, work, k, c, h, w, kh, kw, sep)
    for j in range(hw):
        std = sqrt(m[j] / c) / coef[j]
        m[j] = std if std > threshold else <real_t>threshold
    for ch in range(c):
        for j in range(hw):
            y[ch * hw + j] = z[ch * hw + j] / m[j]


cdef void _div_backward(const real_t* z, const real_t* grad_out, real_t* grad_z,
                        real_t* work, const real_t* coef, const real_t* k,
                        const real_t* k_t, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                        Py_ssize_t kh, Py_ssize_t kw, bint sep,
                        double threshold) noexcept nogil:
    """grad_z_c = g_c / d + 2 z_c corr^T(dL/dq) / C, q = corr(sum_c z_c^2); grad_z may alias z.

    dL/dd = -sum_c g_c z_c / d^2 reaches std only where std > threshold (nn.Threshold), and
    d std / d q = 1 / (2 sqrt(q/C) coef C) = 1 / (2 std coef^2 C).
    """
    cdef Py_ssize_t hw = h * w, ch, j
    cdef real_t* s = work
    cdef real_t* m = work + hw
    cdef real_t* t = work + 2 * hw
    cdef real_t* tmp = work + 3 * hw
    cdef real_t std, d
    _local_sum_sq(z, work, k, c, h, w, kh, kw, sep)
    for j in range(hw):
        t[j] = grad_out[j] * z[j]
    for ch in range(1, c):
        for j in range(hw):
            t[j] += grad_out[ch * hw + j] * z[ch * hw + j]
    for j in range(hw):
        std = sqrt(m[j] / c) / coef[j]
        if std > threshold:
            d = std
            # Gradient w.r.t. q, with the 1/C of q = corr(.)/C folded in.
            t[j] = -t[j] / (d * d) / (2 * std * coef[j] * coef[j] * c)
        else:
            d = <real_t>threshold
            t[j] = 0
        m[j] = d
    _corr_same(t, s, tmp, h, w, k_t, kh, kw, sep)
    for ch in range(c):
        for j in range(hw):
            grad_z[ch * hw + j] = (grad_out[ch * hw + j] / m[j]
                                   + 2 * z[ch * hw + j] * s[j])


cdef void _sample(int op, const real_t* x, const real_t* grad_out, real_t* out,
                  real_t* work, const real_t* coef, const real_t* k, const real_t* k_t,
                  Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t kh, Py_ssize_t kw,
                  bint sep, double threshold) noexcept nogil:
    if op == SUB_FORWARD:
        _sub_forward(x, out, work, coef, k, c, h, w, kh, kw, sep)
    elif op == SUB_BACKWARD:
        _sub_backward(grad_out, out, work, coef, k_t, c, h, w, kh, kw, sep)
    elif op == CONTRAST_FORWARD:
        _sub_forward(x, out, work, coef, k, c, h, w, kh, kw, sep)
        _div_forward(out, out, work, coef, k, c, h, w, kh, kw, sep, threshold)
    else:
        # out holds z = subtractive(x), then grad_z, then grad_x, each overwritten in place.
        _sub_forward(x, out, work, coef, k, c, h, w, kh, kw, sep)
        _div_backward(out, grad_out, out, work, coef, k, k_t, c, h, w, kh, kw, sep, threshold)
        _sub_backward(out, out, work, coef, k_t, c, h, w, kh, kw, sep)


cdef _run(int op,
          const real_t[:, :, :, ::1] x,         # IN  (n, c, h, w)
          const real_t[:, :, :, ::1] grad_out,  # IN  (n, c, h, w); x when unused
          const real_t[::1] kernel,             # IN  kn flattened, sum 1
          const real_t[::1] kernel_t,           # IN  kn flipped (adjoint)
          Py_ssize_t kh, Py_ssize_t kw, bint separable, double threshold,
          real_t[:, :, :, ::1] out,             # OUT (n, c, h, w)
          int n_threads):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t hw = h * w, i, j, tid
    cdef Py_ssize_t taps = kh + kw if separable else kh * kw
    cdef bint parallel
    cdef double t0
    if n * c * hw == 0:
        return
    parallel = _parallel(n, c, taps, hw, n_threads)
    dtype = np.float32 if real_t is float else np.float64
    cdef real_t[:, ::1] work = np.empty((n_threads if parallel else 1, 4 * hw), dtype=dtype)
    cdef real_t[::1] coef = np.empty(hw, dtype=dtype)
    with nogil:
        for j in range(hw):
            work[0, j] = 1
        _corr_same(&work[0, 0], &coef[0], &work[0, 3 * hw], h, w, &kernel[0], kh, kw,
                   separable)
    if parallel:
        for i in prange(n, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            tid = fc_omp_thread_num()
            _sample(op, &x[i, 0, 0, 0], &grad_out[i, 0, 0, 0], &out[i, 0, 0, 0],
                    &work[tid, 0], &coef[0], &kernel[0], &kernel_t[0],
                    c, h, w, kh, kw, separable, threshold)
            unit_end(b"normalization", i, n, t0)
    else:
        with nogil:
            for i in range(n):
                _sample(op, &x[i, 0, 0, 0], &grad_out[i, 0, 0, 0], &out[i, 0, 0, 0],
                        &work[0, 0], &coef[0], &kernel[0], &kernel_t[0],
                        c, h, w, kh, kw, separable, threshold)


cdef enum:
    # Units a subtractive phase is cut into where the samples alone are fewer.
    _UNITS = 64


cdef inline Py_ssize_t _split(Py_ssize_t total, Py_ssize_t t, Py_ssize_t parts) noexcept nogil:
    return total * t // parts


cdef void _channel_sum(const real_t* x, real_t* s, Py_ssize_t c0, Py_ssize_t c1,
                       Py_ssize_t hw) noexcept nogil:
    """s = x_c0 + x_c0+1 + ... + x_c1-1, in channel order (c0 < c1)."""
    cdef Py_ssize_t ch, j
    for j in range(hw):
        s[j] = x[c0 * hw + j]
    for ch in range(c0 + 1, c1):
        for j in range(hw):
            s[j] += x[ch * hw + j]


cdef void _sub_phase(int phase, bint forward, const real_t* x, real_t* y, real_t* parts,
                     real_t* means, real_t* tmp, const real_t* coef, const real_t* k,
                     Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t kh,
                     Py_ssize_t kw, bint sep, Py_ssize_t groups,
                     Py_ssize_t u) noexcept nogil:
    """Unit u of phase 0 (partial channel sums of sample u // groups into parts), 1 (sample
    u: the mean plane into means, tmp a plane of scratch) or 2 (subtraction for sample
    u // groups's channel group u % groups) of a subtractive forward (y = x - mean) or
    backward (the adjoint, x = grad_out, y = grad_x)."""
    cdef Py_ssize_t hw = h * w, i = u // groups, g = u % groups, j, ch
    cdef Py_ssize_t c0 = _split(c, g, groups), c1 = _split(c, g + 1, groups)
    cdef real_t* s
    cdef real_t* m
    if phase == 0:
        _channel_sum(x + i * c * hw, parts + u * hw, c0, c1, hw)
        return
    if phase == 1:
        s = parts + u * groups * hw
        for g in range(1, groups):
            for j in range(hw):
                s[j] += s[g * hw + j]
        m = means + u * hw
        if forward:
            _corr_same(s, m, tmp, h, w, k, kh, kw, sep)
            for j in range(hw):
                m[j] = m[j] / (c * coef[j])
        else:
            for j in range(hw):
                s[j] = s[j] / (c * coef[j])
            _corr_same(s, m, tmp, h, w, k, kh, kw, sep)
        return
    m = means + i * hw
    for ch in range(c0, c1):
        for j in range(hw):
            y[(i * c + ch) * hw + j] = x[(i * c + ch) * hw + j] - m[j]


cdef _subtractive(bint forward,
                  const real_t[:, :, :, ::1] x,         # IN  (n, c, h, w)
                  const real_t[::1] kernel,             # IN  kn flattened, sum 1
                  const real_t[::1] kernel_t,           # IN  kn flipped (adjoint)
                  Py_ssize_t kh, Py_ssize_t kw, bint separable,
                  real_t[:, :, :, ::1] out,             # OUT (n, c, h, w)
                  int n_threads):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t hw = h * w, u, phase, units, tid
    cdef Py_ssize_t taps = kh + kw if separable else kh * kw
    cdef Py_ssize_t groups = max(1, min(c, (_UNITS + n - 1) // n))
    cdef bint parallel
    cdef double t0
    if n * c * hw == 0:
        return
    parallel = _parallel(n, c, taps, hw, n_threads)
    dtype = np.float32 if real_t is float else np.float64
    cdef real_t[::1] parts = np.empty(n * groups * hw, dtype=dtype)
    cdef real_t[::1] means = np.empty(n * hw, dtype=dtype)
    cdef real_t[::1] coef = np.empty(hw, dtype=dtype)
    cdef real_t[::1] ones = np.ones(hw, dtype=dtype)
    cdef real_t[:, ::1] tmp = np.empty((n_threads if parallel else 1, hw), dtype=dtype)
    cdef const real_t* k = &kernel[0] if forward else &kernel_t[0]
    with nogil:
        _corr_same(&ones[0], &coef[0], &tmp[0, 0], h, w, &kernel[0], kh, kw, separable)
    for phase in range(3):
        units = n if phase == 1 else n * groups
        if parallel:
            for u in prange(units, schedule='static', nogil=True, num_threads=n_threads):
                t0 = unit_begin()
                tid = fc_omp_thread_num()
                _sub_phase(phase, forward, &x[0, 0, 0, 0], &out[0, 0, 0, 0], &parts[0],
                           &means[0], &tmp[tid, 0], &coef[0], k, n, c, h, w, kh, kw,
                           separable, groups, u)
                unit_end(b"subtractive_normalization", u, units, t0)
        else:
            with nogil:
                for u in range(units):
                    _sub_phase(phase, forward, &x[0, 0, 0, 0], &out[0, 0, 0, 0], &parts[0],
                               &means[0], &tmp[0, 0], &coef[0], k, n, c, h, w, kh, kw,
                               separable, groups, u)


def subtractive_forward(const real_t[:, :, :, ::1] x not None,  # IN  (n, c, h, w)
                        const real_t[::1] kernel not None,      # IN  kn flattened
                        const real_t[::1] kernel_t not None,    # IN  kn flipped
                        Py_ssize_t kh, Py_ssize_t kw, bint separable,
                        real_t[:, :, :, ::1] y not None,        # OUT (n, c, h, w)
                        int n_threads):
    """y_c = x_c - corr(sum_c x_c) / (C corr(1))."""
    _subtractive(True, x, kernel, kernel_t, kh, kw, separable, y, n_threads)
    return np.asarray(y)


def subtractive_backward(const real_t[:, :, :, ::1] grad_out not None,  # IN  (n, c, h, w)
                         const real_t[::1] kernel not None,             # IN  kn flattened
                         const real_t[::1] kernel_t not None,           # IN  kn flipped
                         Py_ssize_t kh, Py_ssize_t kw, bint separable,
                         real_t[:, :, :, ::1] grad_x not None,          # OUT (n, c, h, w)
                         int n_threads):
    """grad_x_c = g_c - corr^T(sum_c g_c / (C corr(1))) (the map is linear: x not needed)."""
    _subtractive(False, grad_out, kernel, kernel_t, kh, kw, separable, grad_x, n_threads)
    return np.asarray(grad_x)


def contrastive_forward(const real_t[:, :, :, ::1] x not None,  # IN  (n, c, h, w)
                        const real_t[::1] kernel not None,      # IN  kn flattened
                        const real_t[::1] kernel_t not None,    # IN  kn flipped
                        Py_ssize_t kh, Py_ssize_t kw, bint separable, double threshold,
                        real_t[:, :, :, ::1] y not None,        # OUT (n, c, h, w)
                        int n_threads):
    """z = subtractive(x); y_c = z_c / thr(sqrt(corr(sum_c z_c^2) / C) / corr(1))."""
    _run(CONTRAST_FORWARD, x, x, kernel, kernel_t, kh, kw, separable, threshold, y,
         n_threads)
    return np.asarray(y)


def contrastive_backward(const real_t[:, :, :, ::1] x not None,         # IN  (n, c, h, w)
                         const real_t[:, :, :, ::1] grad_out not None,  # IN  (n, c, h, w)
                         const real_t[::1] kernel not None,             # IN  kn flattened
                         const real_t[::1] kernel_t not None,           # IN  kn flipped
                         Py_ssize_t kh, Py_ssize_t kw, bint separable, double threshold,
                         real_t[:, :, :, ::1] grad_x not None,          # OUT (n, c, h, w)
                         int n_threads):
    """grad_x = J_sub^T J_div^T grad_out, statistics recomputed from x."""
    _run(CONTRAST_BACKWARD, x, grad_out, kernel, kernel_t, kh, kw, separable, threshold,
         grad_x, n_threads)
    return np.asarray(grad_x)
