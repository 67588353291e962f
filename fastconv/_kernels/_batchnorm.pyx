"""Batch normalization over the channels of an NCHW batch (PyTorch's BatchNorm2d).

Design
------
(a) Ops. ``batch_norm2d_forward``: per channel c, over the M = N*H*W values of the batch,
    y = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]. In training, mean and the
    *biased* variance var are the batch's, computed here and written out (the caller keeps
    them for backward and updates its running statistics); in evaluation they are given.
    ``batch_norm2d_backward``: grad_x, and grad_weight/grad_bias added to (accumulate) or
    written.
(b) Layout and dtypes. NCHW, C-contiguous, ``real_t`` (float32 or float64); mean and var are
    float64 (C,) vectors, and every channel sum is accumulated in double, so float32 batches
    of any size keep float32 accuracy.
(c) Threading. Units are (channel, sample group) pairs, S = _sample_groups(N, C) groups per
    channel: one from 64 channels on, where a unit is a whole channel whose statistics,
    normalization and gradients run in one pass over data that stays in cache; below, as
    many as make 64 units. There each unit's sums (in double, in the order n, then h*w) are
    partials, added in group order between the passes (statistics, then normalization;
    gradient sums, then grad_x). Units and sums are fixed by the shapes: results are bitwise
    independent of the thread count. Below ``SERIAL_BELOW // 2`` elements the call runs
    serially (half the shared threshold: two passes per element).
(d) Maths of the training backward, with xhat = (x - mean) * invstd:
    grad_bias = Σ g, grad_weight = Σ g xhat,
    grad_x = weight * invstd / M * (M g - grad_bias - xhat grad_weight)
    (the mean and variance depend on x). In evaluation they are constants:
    grad_x = weight * invstd * g.
(e) Saved for backward: the caller passes back x, mean and var of the forward pass.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

from ._types cimport real_t

from ._openmp cimport SERIAL_BELOW
from ._trace cimport trace_active, unit_begin, unit_end


cdef enum:
    # Units a call is cut into where the channels alone are fewer (see (c)).
    _UNITS = 64


cdef inline Py_ssize_t _sample_groups(Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    return max(1, min(n, (_UNITS + c - 1) // c))


cdef inline Py_ssize_t _split(Py_ssize_t total, Py_ssize_t t, Py_ssize_t parts) noexcept nogil:
    return total * t // parts


cdef enum:
    # Independent partial sums per channel sum: a single running sum waits on each add's
    # latency (about 1 ns per element); eight lanes vectorize. Combined in a fixed order.
    _LANES = 8


cdef inline double _lanes_total(const double* acc) noexcept nogil:
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef double _sum(const real_t* x, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c, Py_ssize_t hw,
                 Py_ssize_t ch, double center, bint square) noexcept nogil:
    """Σ (x - center) or, if square, Σ (x - center)^2 over samples [n0, n1) of channel ch:
    each sample's row in _LANES partial sums, in the order n, then h*w."""
    cdef Py_ssize_t i, j, l, tail
    cdef const real_t* p
    cdef double acc[_LANES]
    cdef double s = 0, dv
    for l in range(_LANES):
        acc[l] = 0
    tail = hw - hw % _LANES
    for i in range(n0, n1):
        p = x + (i * c + ch) * hw
        j = 0
        if square:
            while j < tail:
                for l in range(_LANES):
                    dv = p[j + l] - center
                    acc[l] += dv * dv
                j += _LANES
            while j < hw:
                s += (p[j] - center) * (p[j] - center)
                j += 1
        else:
            while j < tail:
                for l in range(_LANES):
                    acc[l] += p[j + l]
                j += _LANES
            while j < hw:
                s += p[j]
                j += 1
    return _lanes_total(acc) + s


cdef void _normalize(const real_t* x, real_t* y, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c,
                     Py_ssize_t hw, Py_ssize_t ch, double mean, double var, double eps,
                     double weight, double bias) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const real_t* p
    cdef real_t* q
    cdef real_t scale = <real_t>(weight / sqrt(var + eps))
    cdef real_t shift = <real_t>(bias - mean * weight / sqrt(var + eps))
    for i in range(n0, n1):
        p = x + (i * c + ch) * hw
        q = y + (i * c + ch) * hw
        for j in range(hw):
            q[j] = p[j] * scale + shift


cdef struct Dims:
    Py_ssize_t n, c, hw, groups
    bint training, accumulate
    double eps


cdef enum _Phase:
    _WHOLE      # a whole channel: statistics (in training) and normalization, or gradients
    _SUMS       # partial sums of x
    _SQUARES    # partial sums of (x - mean)^2
    _NORMALIZE  # normalization of the unit's samples
    _GRAD_SUMS  # partial Σ g and Σ g (x - mean)
    _GRAD_X     # grad_x of the unit's samples


cdef inline Py_ssize_t _units(const Dims* d, _Phase phase) noexcept nogil:
    return d.c * (1 if phase == _WHOLE else d.groups)


cdef void _forward_unit(const real_t* x, real_t* y, const real_t* weight, const real_t* bias,
                        double* mean, double* var, double* parts, const Dims* d,
                        _Phase phase, Py_ssize_t u) noexcept nogil:
    """Unit u of a forward phase; parts is (C, groups) where groups > 1."""
    cdef Py_ssize_t ch = u // d.groups, s = u % d.groups
    cdef Py_ssize_t n0 = _split(d.n, s, d.groups), n1 = _split(d.n, s + 1, d.groups)
    cdef double m_count = <double>(d.n * d.hw)
    if phase == _WHOLE:
        if d.training:
            mean[ch] = _sum(x, 0, d.n, d.c, d.hw, ch, 0, False) / m_count
            var[ch] = _sum(x, 0, d.n, d.c, d.hw, ch, mean[ch], True) / m_count
        _normalize(x, y, 0, d.n, d.c, d.hw, ch, mean[ch], var[ch], d.eps, weight[ch],
                   bias[ch])
    elif phase == _SUMS:
        parts[u] = _sum(x, n0, n1, d.c, d.hw, ch, 0, False)
    elif phase == _SQUARES:
        parts[u] = _sum(x, n0, n1, d.c, d.hw, ch, mean[ch], True)
    else:
        _normalize(x, y, n0, n1, d.c, d.hw, ch, mean[ch], var[ch], d.eps, weight[ch],
                   bias[ch])


cdef void _forward_phase(const real_t* x, real_t* y, const real_t* weight,
                         const real_t* bias, double* mean, double* var, double* parts,
                         const Dims* d, _Phase phase, int nt, bint parallel) noexcept nogil:
    cdef Py_ssize_t u, units = _units(d, phase)
    cdef double t0
    if parallel:
        for u in prange(units, schedule='static', num_threads=nt):
            t0 = unit_begin()
            _forward_unit(x, y, weight, bias, mean, var, parts, d, phase, u)
            unit_end(b"batchnorm_forward", u, units, t0)
    else:
        for u in range(units):
            _forward_unit(x, y, weight, bias, mean, var, parts, d, phase, u)


cdef void _combine(const double* parts, Py_ssize_t c, Py_ssize_t groups, double count,
                   double* out) noexcept nogil:
    """out[ch] = (parts[ch, 0] + parts[ch, 1] + ...) / count, in group order."""
    cdef Py_ssize_t ch, s
    cdef double acc
    for ch in range(c):
        acc = 0
        for s in range(groups):
            acc += parts[ch * groups + s]
        out[ch] = acc / count


def batch_norm2d_forward(const real_t[:, :, :, ::1] x,    # IN  (N, C, H, W)
                         const real_t[::1] weight,        # IN  (C,)
                         const real_t[::1] bias,          # IN  (C,)
                         double[::1] mean,                # OUT in training, else IN (C,)
                         double[::1] var,                 # OUT in training, else IN (C,)
                         real_t[:, :, :, ::1] y,          # OUT (N, C, H, W)
                         bint training, double eps, int n_threads):
    """y[n,c,h,w] = weight[c] (x[n,c,h,w] - mean[c]) / sqrt(var[c] + eps) + bias[c];
    in training mean and var (biased) are the batch's and written out first."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
    cdef bint big = n * c * hw >= SERIAL_BELOW // 2
    cdef int nt = n_threads if big else 1
    cdef bint parallel = nt > 1 or (trace_active() and big)
    cdef const real_t* xp = &x[0, 0, 0, 0]
    cdef real_t* yp = &y[0, 0, 0, 0]
    cdef const real_t* wp = &weight[0]
    cdef const real_t* bp = &bias[0]
    cdef double* parts = NULL
    cdef Dims d
    d.n, d.c, d.hw, d.groups = n, c, hw, _sample_groups(n, c)
    d.training, d.accumulate, d.eps = training, False, eps
    if d.groups == 1:
        with nogil:
            _forward_phase(xp, yp, wp, bp, &mean[0], &var[0], NULL, &d, _WHOLE, nt, parallel)
        return
    parts = <double*>malloc(c * d.groups * sizeof(double))
    if parts == NULL:
        raise MemoryError("batch_norm2d_forward: cannot allocate partial sums")
    try:
        with nogil:
            if training:
                _forward_phase(xp, yp, wp, bp, &mean[0], &var[0], parts, &d, _SUMS, nt,
                               parallel)
                _combine(parts, c, d.groups, <double>(n * hw), &mean[0])
                _forward_phase(xp, yp, wp, bp, &mean[0], &var[0], parts, &d, _SQUARES, nt,
                               parallel)
                _combine(parts, c, d.groups, <double>(n * hw), &var[0])
            _forward_phase(xp, yp, wp, bp, &mean[0], &var[0], parts, &d, _NORMALIZE, nt,
                           parallel)
    finally:
        free(parts)


cdef void _grad_sums(const real_t* x, const real_t* g, double mean, const Dims* d,
                     Py_ssize_t ch, Py_ssize_t n0, Py_ssize_t n1, double* sum_g,
                     double* sum_gx) noexcept nogil:
    """Σ g and Σ g (x - mean) over samples [n0, n1) of channel ch (in _LANES partial sums
    each, as _sum)."""
    cdef Py_ssize_t i, j, l, tail = d.hw - d.hw % _LANES
    cdef const real_t* xr
    cdef const real_t* gr
    cdef double ag[_LANES]
    cdef double agx[_LANES]
    cdef double sg = 0, sgx = 0
    for l in range(_LANES):
        ag[l] = 0
        agx[l] = 0
    for i in range(n0, n1):
        xr = x + (i * d.c + ch) * d.hw
        gr = g + (i * d.c + ch) * d.hw
        j = 0
        while j < tail:
            for l in range(_LANES):
                ag[l] += gr[j + l]
                agx[l] += gr[j + l] * (xr[j + l] - mean)
            j += _LANES
        while j < d.hw:
            sg += gr[j]
            sgx += gr[j] * (xr[j] - mean)
            j += 1
    sum_g[0] = _lanes_total(ag) + sg
    sum_gx[0] = _lanes_total(agx) + sgx


cdef void _store_grads(real_t* grad_weight, real_t* grad_bias, double var, const Dims* d,
                       Py_ssize_t ch, double sum_g, double sum_gx) noexcept nogil:
    """grad_weight[ch] (+)= Σ g xhat and grad_bias[ch] (+)= Σ g, given Σ g (x - mean)."""
    cdef double gw = sum_gx * (1.0 / sqrt(var + d.eps))
    if d.accumulate:
        grad_weight[ch] += <real_t>gw
        grad_bias[ch] += <real_t>sum_g
    else:
        grad_weight[ch] = <real_t>gw
        grad_bias[ch] = <real_t>sum_g


cdef void _grad_x(const real_t* x, const real_t* g, real_t* gx, double weight, double mean,
                  double var, const Dims* d, Py_ssize_t ch, Py_ssize_t n0, Py_ssize_t n1,
                  double sum_g, double sum_gx) noexcept nogil:
    # grad_x = k (g - a - (x - mean) b), with k = weight invstd and, in training,
    # a = Σg / M and b = invstd^2 Σ g (x - mean) / M.
    cdef Py_ssize_t i, j
    cdef const real_t* xr
    cdef const real_t* gr
    cdef real_t* out
    cdef double invstd = 1.0 / sqrt(var + d.eps)
    cdef double m_count = <double>(d.n * d.hw)
    cdef double k = weight * invstd
    cdef double a = sum_g / m_count if d.training else 0
    cdef double b = sum_gx * invstd * invstd / m_count if d.training else 0
    for i in range(n0, n1):
        xr = x + (i * d.c + ch) * d.hw
        gr = g + (i * d.c + ch) * d.hw
        out = gx + (i * d.c + ch) * d.hw
        for j in range(d.hw):
            out[j] = <real_t>(k * (gr[j] - a - (xr[j] - mean) * b))


cdef void _backward_unit(const real_t* x, const real_t* g, real_t* gx, const real_t* weight,
                         const double* mean, const double* var, real_t* grad_weight,
                         real_t* grad_bias, double* sums, const Dims* d, _Phase phase,
                         Py_ssize_t u) noexcept nogil:
    """Unit u of a backward phase. sums holds the (C, groups) partials of Σ g, then those
    of Σ g (x - mean), then the (C,) totals of each."""
    cdef Py_ssize_t ch = u // d.groups, s = u % d.groups
    cdef Py_ssize_t n0 = _split(d.n, s, d.groups), n1 = _split(d.n, s + 1, d.groups)
    cdef Py_ssize_t units = d.c * d.groups
    cdef double sg, sgx
    if phase == _WHOLE:
        _grad_sums(x, g, mean[ch], d, ch, 0, d.n, &sg, &sgx)
        _store_grads(grad_weight, grad_bias, var[ch], d, ch, sg, sgx)
        if gx != NULL:
            _grad_x(x, g, gx, weight[ch], mean[ch], var[ch], d, ch, 0, d.n, sg, sgx)
    elif phase == _GRAD_SUMS:
        _grad_sums(x, g, mean[ch], d, ch, n0, n1, sums + u, sums + units + u)
    else:
        _grad_x(x, g, gx, weight[ch], mean[ch], var[ch], d, ch, n0, n1,
                sums[2 * units + ch], sums[2 * units + d.c + ch])


cdef void _backward_phase(const real_t* x, const real_t* g, real_t* gx, const real_t* weight,
                          const double* mean, const double* var, real_t* grad_weight,
                          real_t* grad_bias, double* sums, const Dims* d, _Phase phase,
                          int nt, bint parallel) noexcept nogil:
    cdef Py_ssize_t u, units = _units(d, phase)
    cdef double t0
    if parallel:
        for u in prange(units, schedule='static', num_threads=nt):
            t0 = unit_begin()
            _backward_unit(x, g, gx, weight, mean, var, grad_weight, grad_bias, sums, d,
                           phase, u)
            unit_end(b"batchnorm_backward", u, units, t0)
    else:
        for u in range(units):
            _backward_unit(x, g, gx, weight, mean, var, grad_weight, grad_bias, sums, d,
                           phase, u)


def batch_norm2d_backward(const real_t[:, :, :, ::1] x,         # IN  (N, C, H, W)
                          const real_t[:, :, :, ::1] grad_y,    # IN  (N, C, H, W)
                          const real_t[::1] weight,             # IN  (C,)
                          const double[::1] mean,               # IN  (C,) forward's
                          const double[::1] var,                # IN  (C,) forward's
                          real_t[:, :, :, ::1] grad_x,          # OUT (N, C, H, W) or None
                          real_t[::1] grad_weight,              # OUT (C,)
                          real_t[::1] grad_bias,                # OUT (C,)
                          bint training, bint accumulate, double eps, int n_threads):
    """grad_bias[c] (+)= Σ grad_y, grad_weight[c] (+)= Σ grad_y xhat and, unless grad_x is
    None, grad_x as in the design notes (d): through the batch statistics in training,
    through constants in evaluation."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], hw = x.shape[2] * x.shape[3]
    cdef Py_ssize_t ch, units
    cdef bint big = n * c * hw >= SERIAL_BELOW // 2
    cdef int nt = n_threads if big else 1
    cdef bint parallel = nt > 1 or (trace_active() and big)
    cdef const real_t* xp = &x[0, 0, 0, 0]
    cdef const real_t* gp = &grad_y[0, 0, 0, 0]
    cdef real_t* gxp = &grad_x[0, 0, 0, 0] if grad_x is not None else NULL
    cdef const real_t* wp = &weight[0]
    cdef real_t* gwp = &grad_weight[0]
    cdef real_t* gbp = &grad_bias[0]
    cdef double* sums = NULL
    cdef Dims d
    d.n, d.c, d.hw, d.groups = n, c, hw, _sample_groups(n, c)
    d.training, d.accumulate, d.eps = training, accumulate, eps
    if d.groups == 1:
        with nogil:
            _backward_phase(xp, gp, gxp, wp, &mean[0], &var[0], gwp, gbp, NULL, &d, _WHOLE,
                            nt, parallel)
        return
    units = c * d.groups
    sums = <double*>malloc((2 * units + 2 * c) * sizeof(double))
    if sums == NULL:
        raise MemoryError("batch_norm2d_backward: cannot allocate partial sums")
    try:
        with nogil:
            _backward_phase(xp, gp, gxp, wp, &mean[0], &var[0], gwp, gbp, sums, &d,
                            _GRAD_SUMS, nt, parallel)
            _combine(sums, c, d.groups, 1.0, sums + 2 * units)
            _combine(sums + units, c, d.groups, 1.0, sums + 2 * units + c)
            for ch in range(c):
                _store_grads(gwp, gbp, var[ch], &d, ch, sums[2 * units + ch],
                             sums[2 * units + c + ch])
            if gxp != NULL:
                _backward_phase(xp, gp, gxp, wp, &mean[0], &var[0], gwp, gbp, sums, &d,
                                _GRAD_X, nt, parallel)
    finally:
        free(sums)
