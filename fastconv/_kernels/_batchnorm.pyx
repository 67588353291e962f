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
(c) Threading. Channels are independent: a static ``prange`` over C, each channel's sums
    taken by one thread in a fixed order (n, then h*w). Results are bitwise independent of
    the thread count. Below ``SERIAL_BELOW // 2`` elements the call runs serially (half
    the shared threshold: two passes per element).
(d) Maths of the training backward, with xhat = (x - mean) * invstd:
    grad_bias = Σ g, grad_weight = Σ g xhat,
    grad_x = weight * invstd / M * (M g - grad_bias - xhat grad_weight)
    (the mean and variance depend on x). In evaluation they are constants:
    grad_x = weight * invstd * g.
(e) Saved for backward: the caller passes back x, mean and var of the forward pass.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt

from ._types cimport real_t

from ._openmp cimport SERIAL_BELOW


cdef void _stats(const real_t* x, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw, Py_ssize_t ch,
                 double* mean, double* var) noexcept nogil:
    """Mean and biased variance of channel ch, two passes (stable for large means)."""
    cdef Py_ssize_t i, j
    cdef const real_t* p
    cdef double s = 0, d
    cdef double m_count = <double>(n * hw)
    for i in range(n):
        p = x + (i * c + ch) * hw
        for j in range(hw):
            s += p[j]
    s /= m_count
    mean[0] = s
    d = 0
    for i in range(n):
        p = x + (i * c + ch) * hw
        for j in range(hw):
            d += (p[j] - s) * (p[j] - s)
    var[0] = d / m_count


cdef void _normalize(const real_t* x, real_t* y, Py_ssize_t n, Py_ssize_t c, Py_ssize_t hw,
                     Py_ssize_t ch, double mean, double var, double eps, double weight,
                     double bias) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const real_t* p
    cdef real_t* q
    cdef real_t scale = <real_t>(weight / sqrt(var + eps))
    cdef real_t shift = <real_t>(bias - mean * weight / sqrt(var + eps))
    for i in range(n):
        p = x + (i * c + ch) * hw
        q = y + (i * c + ch) * hw
        for j in range(hw):
            q[j] = p[j] * scale + shift


cdef void _forward_channel(const real_t* x, real_t* y, Py_ssize_t n, Py_ssize_t c,
                           Py_ssize_t hw, Py_ssize_t ch, const real_t* weight,
                           const real_t* bias, double* mean, double* var, bint training,
                           double eps) noexcept nogil:
    if training:
        _stats(x, n, c, hw, ch, mean + ch, var + ch)
    _normalize(x, y, n, c, hw, ch, mean[ch], var[ch], eps, weight[ch], bias[ch])


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
    cdef Py_ssize_t ch
    cdef int nt = n_threads if n * c * hw >= SERIAL_BELOW // 2 else 1
    cdef const real_t* xp = &x[0, 0, 0, 0]
    cdef real_t* yp = &y[0, 0, 0, 0]
    if nt > 1:
        for ch in prange(c, schedule='static', nogil=True, num_threads=nt):
            _forward_channel(xp, yp, n, c, hw, ch, &weight[0], &bias[0], &mean[0], &var[0],
                             training, eps)
    else:
        with nogil:
            for ch in range(c):
                _forward_channel(xp, yp, n, c, hw, ch, &weight[0], &bias[0], &mean[0],
                                 &var[0], training, eps)


cdef void _backward_channel(const real_t* x, const real_t* g, real_t* gx, Py_ssize_t n,
                            Py_ssize_t c, Py_ssize_t hw, Py_ssize_t ch, double weight,
                            double mean, double var, double eps, bint training,
                            real_t* grad_weight, real_t* grad_bias,
                            bint accumulate) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef const real_t* xr
    cdef const real_t* gr
    cdef real_t* out
    cdef double invstd = 1.0 / sqrt(var + eps)
    cdef double sum_g = 0, sum_gx = 0, m_count = <double>(n * hw)
    cdef double a, b, k
    for i in range(n):
        xr = x + (i * c + ch) * hw
        gr = g + (i * c + ch) * hw
        for j in range(hw):
            sum_g += gr[j]
            sum_gx += gr[j] * (xr[j] - mean)
    sum_gx *= invstd                    # Σ g xhat
    if accumulate:
        grad_weight[ch] += <real_t>sum_gx
        grad_bias[ch] += <real_t>sum_g
    else:
        grad_weight[ch] = <real_t>sum_gx
        grad_bias[ch] = <real_t>sum_g
    if gx == NULL:
        return
    # grad_x = k (g - a - (x - mean) b), with k = weight invstd and, in training,
    # a = Σg / M and b = invstd^2 Σ g (x - mean) / M.
    k = weight * invstd
    a = sum_g / m_count if training else 0
    b = sum_gx * invstd / m_count if training else 0
    for i in range(n):
        xr = x + (i * c + ch) * hw
        gr = g + (i * c + ch) * hw
        out = gx + (i * c + ch) * hw
        for j in range(hw):
            out[j] = <real_t>(k * (gr[j] - a - (xr[j] - mean) * b))


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
    cdef Py_ssize_t ch
    cdef int nt = n_threads if n * c * hw >= SERIAL_BELOW // 2 else 1
    cdef const real_t* xp = &x[0, 0, 0, 0]
    cdef const real_t* gp = &grad_y[0, 0, 0, 0]
    cdef real_t* gxp = &grad_x[0, 0, 0, 0] if grad_x is not None else NULL
    if nt > 1:
        for ch in prange(c, schedule='static', nogil=True, num_threads=nt):
            _backward_channel(xp, gp, gxp, n, c, hw, ch, weight[ch], mean[ch], var[ch], eps,
                              training, &grad_weight[0], &grad_bias[0], accumulate)
    else:
        with nogil:
            for ch in range(c):
                _backward_channel(xp, gp, gxp, n, c, hw, ch, weight[ch], mean[ch], var[ch],
                                  eps, training, &grad_weight[0], &grad_bias[0], accumulate)
