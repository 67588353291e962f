# Loss kernels: NLL, fused log-softmax + NLL, MSE and multi-class margin (hinge) loss.
#
# Ops (x, logp: (N, K) rows of class scores; target: (N,) intp labels in [0, K))
#   nll              L = -1/N sum_n logp[n, t_n]
#   nll_smooth       label smoothing eps (PyTorch's): the target puts 1 - eps on t_n and eps/K
#                    on every class, L = -1/N sum_n [(1-eps) logp[n, t_n] + eps/K sum_i
#                    logp[n, i]]; backward -(eps/K + (1-eps)[i == t_n]) / N.
#   log_softmax_nll  logp = log_softmax(x); L = nll(logp); backward (exp(logp) - onehot) / N.
#                    Forward saves logp: backward needs nothing else (sklearn _loss.pyx's
#                    "stable fused loss and link").
#   mse              L = 1/size sum (x - t)^2 over all elements (Torch MSECriterion)
#   margin           L = 1/N sum_n 1/K sum_{i != t_n} max(0, margin - x[n, t_n] + x[n, i])
#                    (Torch MultiMarginCriterion, p = 1)
#
# Layout and dtypes: C-contiguous (N, K) rows, or flat arrays for MSE; real_t is float32 or
# float64; labels are intp (validated in [0, K) by the Python wrapper before any kernel runs,
# so indexing by a label can never leave the row).
#
# Determinism: every loss is accumulated in double, and partial sums are formed per row (or
# per fixed chunk of CHUNK elements for MSE) and then added in index order by one thread, so
# the loss is bitwise identical for every thread count. Gradients are written row by row
# (race-free), in parallel over rows above SERIAL_BELOW elements of work.
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, INFINITY
import numpy as np
from ._types cimport real_t

from ._openmp cimport CHUNK, SERIAL_BELOW
from ._trace cimport trace_active, unit_begin, unit_end


cdef inline bint _parallel(Py_ssize_t tasks, Py_ssize_t work, int n_threads) noexcept nogil:
    return (n_threads > 1 or trace_active()) and tasks > 1 and work >= SERIAL_BELOW


cdef inline double _sum_ordered(const double[::1] parts) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(parts.shape[0]):
        s += parts[i]
    return s


cdef inline real_t _exp(real_t v) noexcept nogil:
    if real_t is float:
        return expf(v)
    else:
        return exp(v)


# One dispatcher for the row-wise ops and one for the chunked ones, as _activation.pyx's
# _elementwise: each op's work on one row (or chunk) is written once, and the only
# difference between the parallel and the serial call is the loop that hands out rows.
cdef enum _Op:
    _NLL_BACKWARD
    _NLL_SMOOTH_BACKWARD
    _LSM_NLL_FORWARD
    _LSM_NLL_BACKWARD
    _MARGIN_FORWARD
    _MARGIN_BACKWARD
    _MSE_FORWARD
    _MSE_BACKWARD


cdef inline void _row(_Op op, const real_t* x, real_t* out, Py_ssize_t k, Py_ssize_t t,
                      double param, real_t scale, double* loss) noexcept nogil:
    """One row of a row-wise op: x and out are the row's k scores and outputs (out may be
    NULL), t its label, param the op's hyperparameter (the margin, the label smoothing); a
    forward op stores the row's loss in loss[0]."""
    if op == _NLL_BACKWARD:
        _nll_backward_row(out, k, t, scale)
    elif op == _NLL_SMOOTH_BACKWARD:
        _nll_smooth_backward_row(out, k, t, param, scale)
    elif op == _LSM_NLL_FORWARD:
        loss[0] = _log_softmax_nll_row(x, out, k, t)
    elif op == _LSM_NLL_BACKWARD:
        _log_softmax_nll_backward_row(x, out, k, t, scale)
    elif op == _MARGIN_FORWARD:
        loss[0] = _margin_row(x, k, t, param)
    else:
        _margin_backward_row(x, out, k, t, param, scale)


cdef void _by_rows(_Op op, const real_t* x, real_t* out, const Py_ssize_t* target,
                   Py_ssize_t n_rows, Py_ssize_t k, double param, real_t scale,
                   double* row_loss, int n_threads) noexcept nogil:
    """Run a row-wise op over n_rows rows of k; row r's loss goes to row_loss[r]."""
    cdef Py_ssize_t r
    cdef double t0
    if _parallel(n_rows, n_rows * k, n_threads):
        for r in prange(n_rows, schedule='static', num_threads=n_threads):
            t0 = unit_begin()
            _row(op, x + r * k if x != NULL else NULL, out + r * k if out != NULL else NULL,
                 k, target[r], param, scale, row_loss + r if row_loss != NULL else NULL)
            unit_end(b"loss_rows", r, n_rows, t0)
    else:
        for r in range(n_rows):
            _row(op, x + r * k if x != NULL else NULL, out + r * k if out != NULL else NULL,
                 k, target[r], param, scale, row_loss + r if row_loss != NULL else NULL)


cdef inline void _chunk(_Op op, const real_t* x, const real_t* t, real_t* out, Py_ssize_t n,
                        real_t scale, double* part) noexcept nogil:
    if op == _MSE_FORWARD:
        part[0] = _sq_diff_sum(x, t, n)
    else:
        _mse_backward_impl(x, t, out, scale, n)


cdef void _by_chunks(_Op op, const real_t* x, const real_t* t, real_t* out, Py_ssize_t size,
                     real_t scale, double* parts, int n_threads) noexcept nogil:
    """Run a flat op over fixed chunks of CHUNK elements (whatever the thread count, so
    partial sums never depend on it); chunk c's partial result goes to parts[c]."""
    cdef Py_ssize_t n_chunks = (size + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c
    cdef double t0
    if _parallel(n_chunks, size, n_threads):
        for c in prange(n_chunks, schedule='static', num_threads=n_threads):
            t0 = unit_begin()
            _chunk(op, x + c * CHUNK, t + c * CHUNK, out + c * CHUNK if out != NULL else NULL,
                   min(CHUNK, size - c * CHUNK), scale, parts + c if parts != NULL else NULL)
            unit_end(b"loss_chunks", c, n_chunks, t0)
    else:
        for c in range(n_chunks):
            _chunk(op, x + c * CHUNK, t + c * CHUNK, out + c * CHUNK if out != NULL else NULL,
                   min(CHUNK, size - c * CHUNK), scale, parts + c if parts != NULL else NULL)


# ---------------------------------------------------------------------------------------
# NLL
# ---------------------------------------------------------------------------------------

def labels_in_range(const Py_ssize_t[::1] target, Py_ssize_t k):
    """True when every label lies in [0, k): the check a caller's fast path makes before
    indexing rows by labels (the same condition as fastconv._validation.check_target)."""
    cdef Py_ssize_t i
    cdef bint ok = True
    with nogil:
        for i in range(target.shape[0]):
            if target[i] < 0 or target[i] >= k:
                ok = False
                break
    return ok



def nll_loss_forward(const real_t[:, ::1] logp,           # IN  (N, K) log-probabilities
                     const Py_ssize_t[::1] target):        # IN  (N,) labels
    """L = -1/N sum_n logp[n, target[n]] (N >= 1); O(N), so serial."""
    cdef Py_ssize_t n_rows = logp.shape[0]
    cdef Py_ssize_t r
    cdef double s = 0
    with nogil:
        for r in range(n_rows):
            s -= logp[r, target[r]]
    return s / n_rows


cdef void _nll_backward_row(real_t* gx, Py_ssize_t k, Py_ssize_t t,
                            real_t scale) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(k):
        gx[i] = 0
    gx[t] = -scale


def nll_smooth_loss_forward(const real_t[:, ::1] logp,    # IN  (N, K) log-probabilities
                            const Py_ssize_t[::1] target, # IN  (N,) labels
                            double eps):                  # label smoothing in [0, 1)
    """L = -1/N sum_n [(1-eps) logp[n, t_n] + eps/K sum_i logp[n, i]] (N, K >= 1).

    Serial, rows in index order, like nll_loss_forward: O(N K) on a (N, 10) batch is less
    than a thread team's start-up.
    """
    cdef Py_ssize_t n_rows = logp.shape[0], k = logp.shape[1]
    cdef Py_ssize_t r, i
    cdef double s = 0, row
    with nogil:
        for r in range(n_rows):
            row = 0
            for i in range(k):
                row += logp[r, i]
            s -= (1.0 - eps) * logp[r, target[r]] + eps * (row / k)
    return s / n_rows


cdef void _nll_smooth_backward_row(real_t* gx, Py_ssize_t k, Py_ssize_t t, double eps,
                                   real_t scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef double off = scale * (eps / k)
    for i in range(k):
        gx[i] = <real_t>(-off)
    gx[t] = <real_t>(-(scale * (1.0 - eps) + off))


def nll_smooth_loss_backward(const Py_ssize_t[::1] target,  # IN  (N,) labels
                             double eps,                    # label smoothing in [0, 1)
                             double scale,                  # grad_out / N
                             real_t[:, ::1] grad_x,         # OUT (N, K)
                             int n_threads):
    """grad_x[n, i] = -scale (eps/K + (1-eps) [i == target[n]])."""
    with nogil:
        _by_rows(_NLL_SMOOTH_BACKWARD, <const real_t*>NULL, &grad_x[0, 0], &target[0],
                 grad_x.shape[0], grad_x.shape[1], eps, <real_t>scale, NULL, n_threads)


def nll_loss_backward(const Py_ssize_t[::1] target,       # IN  (N,) labels
                      double scale,                       # grad_out / N
                      real_t[:, ::1] grad_x,              # OUT (N, K)
                      int n_threads):
    """grad_x[n, i] = -scale [i == target[n]]."""
    with nogil:
        _by_rows(_NLL_BACKWARD, <const real_t*>NULL, &grad_x[0, 0], &target[0],
                 grad_x.shape[0], grad_x.shape[1], 0, <real_t>scale, NULL, n_threads)


# ---------------------------------------------------------------------------------------
# Fused log-softmax + NLL
# ---------------------------------------------------------------------------------------

cdef double _log_softmax_nll_row(const real_t* x, real_t* logp, Py_ssize_t k,
                                 Py_ssize_t t) noexcept nogil:
    """logp_i = (x_i - m) - log sum_j exp(x_j - m); returns -logp_t computed in double.

    The max shift keeps every exponent <= 0 (no overflow) and the sum >= 1 (no log(0)).
    """
    cdef Py_ssize_t i
    cdef real_t m = -INFINITY
    cdef double s = 0
    cdef double lse
    for i in range(k):
        m = x[i] if x[i] > m else m
    for i in range(k):
        s += _exp(x[i] - m)
    lse = log(s)
    for i in range(k):
        logp[i] = (x[i] - m) - <real_t>lse
    return lse - (<double>x[t] - m)


def log_softmax_nll_forward(const real_t[:, ::1] x,        # IN  (N, K) scores
                            const Py_ssize_t[::1] target,  # IN  (N,) labels
                            real_t[:, ::1] logp,           # OUT (N, K) log-probabilities
                            int n_threads):
    """logp = log_softmax(x) over rows; L = -1/N sum_n logp[n, target[n]] (N >= 1, K >= 1)."""
    cdef double[::1] row_loss = np.empty(x.shape[0], dtype=np.float64)
    with nogil:
        _by_rows(_LSM_NLL_FORWARD, &x[0, 0], &logp[0, 0], &target[0], x.shape[0],
                 x.shape[1], 0, 0, &row_loss[0], n_threads)
    return _sum_ordered(row_loss) / x.shape[0]


cdef void _log_softmax_nll_backward_row(const real_t* logp, real_t* gx, Py_ssize_t k,
                                        Py_ssize_t t, real_t scale) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(k):
        gx[i] = _exp(logp[i]) * scale
    gx[t] = (_exp(logp[t]) - 1) * scale


def log_softmax_nll_backward(const real_t[:, ::1] logp,       # IN  saved log-probabilities
                             const Py_ssize_t[::1] target,    # IN  (N,) labels
                             double scale,                    # grad_out / N
                             real_t[:, ::1] grad_x,           # OUT (N, K)
                             int n_threads):
    """grad_x[n, i] = (exp(logp[n, i]) - [i == target[n]]) * scale."""
    with nogil:
        _by_rows(_LSM_NLL_BACKWARD, &logp[0, 0], &grad_x[0, 0], &target[0], logp.shape[0],
                 logp.shape[1], 0, <real_t>scale, NULL, n_threads)


# ---------------------------------------------------------------------------------------
# MSE
# ---------------------------------------------------------------------------------------

cdef double _sq_diff_sum(const real_t* x, const real_t* t, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    cdef double d
    for i in range(n):
        d = <double>x[i] - t[i]
        s += d * d
    return s


def mse_loss_forward(const real_t[::1] x,          # IN  flat
                     const real_t[::1] target,     # IN  flat, same size
                     int n_threads):
    """L = 1/size sum_i (x_i - target_i)^2 (size >= 1).

    Partial sums cover fixed chunks of CHUNK elements regardless of the thread count and
    are added in chunk order, so the result does not depend on n_threads.
    """
    cdef Py_ssize_t size = x.shape[0]
    cdef double[::1] parts = np.empty((size + CHUNK - 1) // CHUNK, dtype=np.float64)
    with nogil:
        _by_chunks(_MSE_FORWARD, &x[0], &target[0], NULL, size, 0, &parts[0], n_threads)
    return _sum_ordered(parts) / size


cdef void _mse_backward_impl(const real_t* x, const real_t* t, real_t* gx, real_t scale,
                             Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        gx[i] = scale * (x[i] - t[i])


def mse_loss_backward(const real_t[::1] x,         # IN  flat
                      const real_t[::1] target,    # IN  flat
                      double scale,                # 2 grad_out / size
                      real_t[::1] grad_x,          # OUT flat
                      int n_threads):
    """grad_x = scale (x - target)."""
    with nogil:
        _by_chunks(_MSE_BACKWARD, &x[0], &target[0], &grad_x[0], x.shape[0], <real_t>scale,
                   NULL, n_threads)


# ---------------------------------------------------------------------------------------
# Multi-class margin (hinge) loss
# ---------------------------------------------------------------------------------------
# A term is active when z = margin - x_t + x_i is not <= 0. Written that way (rather than
# z > 0) a NaN z counts as active, so NaN scores reach the loss instead of being dropped;
# z == 0 exactly is inactive with zero gradient, as in Torch.

cdef double _margin_row(const real_t* x, Py_ssize_t k, Py_ssize_t t,
                        double margin) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    cdef double z
    cdef double base = margin - <double>x[t]
    for i in range(k):
        z = base + x[i]
        if i != t and not (z <= 0):
            s += z
    return s


def margin_loss_forward(const real_t[:, ::1] x,          # IN  (N, K) scores
                        const Py_ssize_t[::1] target,    # IN  (N,) labels
                        double margin,
                        int n_threads):
    """L = 1/N sum_n 1/K sum_{i != t_n} max(0, margin - x[n, t_n] + x[n, i]) (N >= 1)."""
    cdef double[::1] row_loss = np.empty(x.shape[0], dtype=np.float64)
    with nogil:
        _by_rows(_MARGIN_FORWARD, &x[0, 0], NULL, &target[0], x.shape[0], x.shape[1],
                 margin, 0, &row_loss[0], n_threads)
    return _sum_ordered(row_loss) / x.shape[1] / x.shape[0]


cdef void _margin_backward_row(const real_t* x, real_t* gx, Py_ssize_t k, Py_ssize_t t,
                               double margin, real_t scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t active = 0
    cdef double z
    cdef double base = margin - <double>x[t]
    for i in range(k):
        z = base + x[i]
        if i != t and not (z <= 0):
            gx[i] = scale
            active += 1
        else:
            gx[i] = 0
    gx[t] = -scale * active


def margin_loss_backward(const real_t[:, ::1] x,         # IN  (N, K) scores
                         const Py_ssize_t[::1] target,   # IN  (N,) labels
                         double margin,
                         double scale,                   # grad_out / (N K)
                         real_t[:, ::1] grad_x,          # OUT (N, K)
                         int n_threads):
    """grad_x[n, i] = scale [z_i active] for i != t_n; grad_x[n, t_n] = -scale #active."""
    with nogil:
        _by_rows(_MARGIN_BACKWARD, &x[0, 0], &grad_x[0, 0], &target[0], x.shape[0],
                 x.shape[1], margin, <real_t>scale, NULL, n_threads)
