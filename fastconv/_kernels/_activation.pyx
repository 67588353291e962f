# Activation kernels: sigmoid, tanh, relu, softmax, log-softmax and dropout.
#
# Ops and what forward saves for backward
#   sigmoid      y = 1 / (1 + exp(-x))           backward from y: g * y * (1 - y)
#   tanh         y = tanh(x)                     backward from y: g * (1 - y^2)
#   relu         y = max(x, 0)                   backward from y: g * (y > 0)
#   softmax      y = exp(b x - max) / sum        backward from y: b y (g - <g, y>)
#   log_softmax  y = x - max - log(sum exp)      backward from y: g - exp(y) sum(g)
#   dropout      y = x * mask                    backward from mask: g * mask
# Backward passes read the saved *output* (Chainer's retain_outputs), so a layer never has
# to keep its input alive.
#
# Layout and dtypes
#   Elementwise ops see the flattened, C-contiguous array (`const real_t[::1]`): the Python
#   wrappers reshape any ndim >= 1 to 1-D views. Softmax and log-softmax see (rows, k)
#   views, normalising over the last axis. real_t is float32 or float64; scalars such as
#   beta and p come in as double and are rounded once to real_t.
#
# Threading
#   Elementwise ops split the flat array into fixed chunks of CHUNK elements and prange over
#   chunks; softmax prange's over rows. Both axes are race-free, so results are bitwise
#   identical for any thread count. Work below SERIAL_BELOW elements runs serially: waking an
#   OpenMP team costs more than the op.
#
# Vectorization
#   Every inner loop is branch-free (ternaries become blends) over raw pointers, so gcc -O3
#   vectorizes it. libm calls (expf, exp, tanh) stay scalar without -ffast-math, which is why
#   float32 tanh uses the rational approximation below instead of tanhf.
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, tanh, INFINITY
from ._types cimport real_t

from ._openmp cimport CHUNK, SERIAL_BELOW
from ._trace cimport trace_active, unit_begin, unit_end

cdef enum _Op:
    _SIGMOID
    _TANH
    _RELU
    _SIGMOID_BACKWARD
    _TANH_BACKWARD
    _RELU_BACKWARD
    _MUL


# ---------------------------------------------------------------------------------------
# Per-chunk loops
# ---------------------------------------------------------------------------------------

cdef inline void _sigmoid_impl(const real_t* x, real_t* y, Py_ssize_t n) noexcept nogil:
    """y = 1 / (1 + exp(-x)).

    Stable for any x: exp(-x) may overflow to inf for x << 0, and 1 / (1 + inf) = 0 is
    the right limit; for x >> 0, exp(-x) underflows to 0 and y = 1. No inf - inf arises.
    """
    cdef Py_ssize_t i
    if real_t is float:
        for i in range(n):
            y[i] = 1.0 / (1.0 + expf(-x[i]))
    else:
        for i in range(n):
            y[i] = 1.0 / (1.0 + exp(-x[i]))


cdef inline void _tanh_impl(const real_t* x, real_t* y, Py_ssize_t n) noexcept nogil:
    """y = tanh(x).

    float32: tanh(c) ~= c P(c^2) / Q(c^2), c = clamp(x, -9.5, 9.5), a [11/8] odd rational
    approximation fitted (relative error 2.3e-9 on [0, 9.5]) and evaluated in double, then
    rounded once to float32: the result is within about half an ulp of the correctly rounded
    tanh. Evaluating in float32 instead loses up to 6 ulp to rounding in Horner's scheme.
    For |x| > 9.01, tanh(x) rounds to +-1 in float32, and so does the approximation at the
    clamp. The clamp is written as ternaries that keep NaN (fmax would turn NaN into a
    number); +-inf clamps to +-9.5 -> +-1.
    float64: libm tanh, exact to an ulp.
    """
    cdef Py_ssize_t i
    cdef float c
    cdef double d, s, p, q
    if real_t is float:
        # Two passes: gcc will not if-convert the clamp and vectorize the rational in one
        # loop ("control flow in loop"), but vectorizes each loop alone.
        for i in range(n):
            c = x[i]
            c = 9.5 if c > 9.5 else c
            y[i] = -9.5 if c < -9.5 else c
        for i in range(n):
            d = y[i]
            s = d * d
            p = (((((-1.1216294281932758e-11 * s + 2.9223616366600066e-08) * s
                    + 2.743309442476443e-05) * s + 0.003839666769188134) * s
                  + 0.13656999587847424) * s + 0.9999999977029244)
            q = ((((1.247483414320423e-06 * s + 0.00038882296352996717) * s
                   + 0.027140803217176403) * s + 0.4699033075766328) * s + 1.0)
            y[i] = <float>(d * p / q)
    else:
        for i in range(n):
            y[i] = tanh(x[i])


cdef inline void _relu_impl(const real_t* x, real_t* y, Py_ssize_t n) noexcept nogil:
    """y = max(x, 0); NaN stays NaN (the comparison is false for NaN)."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = 0 if x[i] < 0 else x[i]


cdef inline void _sigmoid_backward_impl(const real_t* y, const real_t* g, real_t* gx,
                                        Py_ssize_t n) noexcept nogil:
    """grad_x = g * y * (1 - y)."""
    cdef Py_ssize_t i
    for i in range(n):
        gx[i] = g[i] * y[i] * (1 - y[i])


cdef inline void _tanh_backward_impl(const real_t* y, const real_t* g, real_t* gx,
                                     Py_ssize_t n) noexcept nogil:
    """grad_x = g * (1 - y^2)."""
    cdef Py_ssize_t i
    for i in range(n):
        gx[i] = g[i] * (1 - y[i] * y[i])


cdef inline void _relu_backward_impl(const real_t* y, const real_t* g, real_t* gx,
                                     Py_ssize_t n) noexcept nogil:
    """grad_x = g where y > 0, else 0."""
    cdef Py_ssize_t i
    for i in range(n):
        gx[i] = g[i] if y[i] > 0 else 0


cdef inline void _mul_impl(const real_t* a, const real_t* b, real_t* out,
                           Py_ssize_t n) noexcept nogil:
    """out = a * b."""
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = a[i] * b[i]


cdef inline void _chunk(_Op op, const real_t* a, const real_t* b, real_t* out,
                        Py_ssize_t n) noexcept nogil:
    # The switch sits outside the element loops, so each loop stays vectorizable.
    if op == _SIGMOID:
        _sigmoid_impl(a, out, n)
    elif op == _TANH:
        _tanh_impl(a, out, n)
    elif op == _RELU:
        _relu_impl(a, out, n)
    elif op == _SIGMOID_BACKWARD:
        _sigmoid_backward_impl(a, b, out, n)
    elif op == _TANH_BACKWARD:
        _tanh_backward_impl(a, b, out, n)
    elif op == _RELU_BACKWARD:
        _relu_backward_impl(a, b, out, n)
    else:
        _mul_impl(a, b, out, n)


cdef void _elementwise(_Op op, const real_t[::1] a, const real_t[::1] b, real_t[::1] out,
                       int n_threads) noexcept:
    """Run ``op`` over the flat arrays; ``b`` is unused (may alias ``a``) for unary ops."""
    cdef Py_ssize_t size = out.shape[0]
    cdef Py_ssize_t n_chunks = (size + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c, start
    cdef double t0
    if size == 0:
        return
    if (n_threads > 1 or trace_active()) and size >= SERIAL_BELOW:
        for c in prange(n_chunks, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            start = c * CHUNK
            _chunk(op, &a[start], &b[start], &out[start], min(CHUNK, size - start))
            unit_end(b"elementwise", c, n_chunks, t0)
    else:
        with nogil:
            _chunk(op, &a[0], &b[0], &out[0], size)


# ---------------------------------------------------------------------------------------
# Elementwise entry points (flat, C-contiguous; shapes checked by the Python wrappers)
# ---------------------------------------------------------------------------------------

def sigmoid_forward(const real_t[::1] x,      # IN
                    real_t[::1] y,            # OUT
                    int n_threads):
    """y = 1 / (1 + exp(-x))."""
    _elementwise(_SIGMOID, x, x, y, n_threads)


def sigmoid_backward(const real_t[::1] y,         # IN  saved forward output
                     const real_t[::1] grad_out,  # IN
                     real_t[::1] grad_x,          # OUT
                     int n_threads):
    """grad_x = grad_out * y * (1 - y)."""
    _elementwise(_SIGMOID_BACKWARD, y, grad_out, grad_x, n_threads)


def tanh_forward(const real_t[::1] x,         # IN
                 real_t[::1] y,               # OUT
                 int n_threads):
    """y = tanh(x)."""
    _elementwise(_TANH, x, x, y, n_threads)


def tanh_backward(const real_t[::1] y,            # IN  saved forward output
                  const real_t[::1] grad_out,     # IN
                  real_t[::1] grad_x,             # OUT
                  int n_threads):
    """grad_x = grad_out * (1 - y^2)."""
    _elementwise(_TANH_BACKWARD, y, grad_out, grad_x, n_threads)


def relu_forward(const real_t[::1] x,         # IN
                 real_t[::1] y,               # OUT
                 int n_threads):
    """y = max(x, 0)."""
    _elementwise(_RELU, x, x, y, n_threads)


def relu_backward(const real_t[::1] y,            # IN  saved forward output
                  const real_t[::1] grad_out,     # IN
                  real_t[::1] grad_x,             # OUT
                  int n_threads):
    """grad_x = grad_out * (y > 0)."""
    _elementwise(_RELU_BACKWARD, y, grad_out, grad_x, n_threads)


def mul(const real_t[::1] a,                  # IN
        const real_t[::1] b,                  # IN
        real_t[::1] out,                      # OUT
        int n_threads):
    """out = a * b (dropout backward: grad_x = grad_out * mask)."""
    _elementwise(_MUL, a, b, out, n_threads)


# ---------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------

cdef inline void _dropout_impl(const real_t* x, const double* u, double p, real_t scale,
                               real_t* mask, real_t* y, Py_ssize_t n) noexcept nogil:
    """mask = (u >= p) / (1 - p); y = x * mask."""
    cdef Py_ssize_t i
    for i in range(n):
        mask[i] = scale if u[i] >= p else 0
        y[i] = x[i] * mask[i]


def dropout_forward(const real_t[::1] x,      # IN
                    const double[::1] u,      # IN  uniform [0, 1) draws, one per element
                    double p,
                    real_t[::1] mask,         # OUT 0 or 1 / (1 - p)
                    real_t[::1] y,            # OUT
                    int n_threads):
    """mask = (u >= p) / (1 - p); y = x * mask (inverted dropout)."""
    cdef Py_ssize_t size = y.shape[0]
    cdef Py_ssize_t n_chunks = (size + CHUNK - 1) // CHUNK
    cdef Py_ssize_t c, start
    # 1 / (1 - p) is formed in double and rounded once, so float32 and float64 masks agree.
    cdef real_t scale = <real_t>(1.0 / (1.0 - p))
    cdef double t0
    if size == 0:
        return
    if (n_threads > 1 or trace_active()) and size >= SERIAL_BELOW:
        for c in prange(n_chunks, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            start = c * CHUNK
            _dropout_impl(&x[start], &u[start], p, scale, &mask[start], &y[start],
                          min(CHUNK, size - start))
            unit_end(b"dropout", c, n_chunks, t0)
    else:
        with nogil:
            _dropout_impl(&x[0], &u[0], p, scale, &mask[0], &y[0], size)


# ---------------------------------------------------------------------------------------
# Softmax and log-softmax over the last axis, one row at a time
# ---------------------------------------------------------------------------------------

cdef inline real_t _row_max(const real_t* x, real_t b, Py_ssize_t k) noexcept nogil:
    """max_i b * x_i; NaN entries are skipped here and poison the sum later."""
    cdef Py_ssize_t i
    cdef real_t m = -INFINITY
    cdef real_t v
    for i in range(k):
        v = b * x[i]
        m = v if v > m else m
    return m


cdef inline real_t _exp(real_t v) noexcept nogil:
    if real_t is float:
        return expf(v)
    else:
        return exp(v)


cdef void _softmax_row(const real_t* x, real_t* y, Py_ssize_t k, real_t b) noexcept nogil:
    """y_i = exp(b x_i - m) / sum_j exp(b x_j - m), m = max_j b x_j.

    Subtracting the row max leaves the ratio unchanged but keeps every exponent <= 0, so
    exp never overflows and the largest term is exactly 1 (the sum is >= 1, never 0).
    The sum is accumulated in double, serially within the row: deterministic.
    """
    cdef Py_ssize_t i
    cdef real_t m = _row_max(x, b, k)
    cdef double s = 0
    cdef real_t inv
    for i in range(k):
        y[i] = _exp(b * x[i] - m)
        s += y[i]
    inv = <real_t>(1.0 / s)
    for i in range(k):
        y[i] = y[i] * inv


cdef void _softmax_backward_row(const real_t* y, const real_t* g, real_t* gx, Py_ssize_t k,
                                real_t b) noexcept nogil:
    """grad_x_i = b y_i (g_i - sum_j g_j y_j)."""
    cdef Py_ssize_t i
    cdef double dot = 0
    cdef real_t d
    for i in range(k):
        dot += <double>g[i] * y[i]
    d = <real_t>dot
    for i in range(k):
        gx[i] = b * y[i] * (g[i] - d)


cdef void _log_softmax_row(const real_t* x, real_t* y, Py_ssize_t k) noexcept nogil:
    """y_i = (x_i - m) - log(sum_j exp(x_j - m)), m = max_j x_j (log-sum-exp).

    Unlike log(softmax(x)), this never takes log(0): the sum is >= 1 after the max shift,
    so very negative log-probabilities stay finite and exact instead of becoming -inf.
    """
    cdef Py_ssize_t i
    cdef real_t m = _row_max(x, <real_t>1, k)
    cdef double s = 0
    cdef real_t lse
    for i in range(k):
        s += _exp(x[i] - m)
    lse = <real_t>log(s)
    for i in range(k):
        y[i] = (x[i] - m) - lse


cdef void _log_softmax_backward_row(const real_t* y, const real_t* g, real_t* gx,
                                    Py_ssize_t k) noexcept nogil:
    """grad_x_i = g_i - exp(y_i) sum_j g_j."""
    cdef Py_ssize_t i
    cdef double s = 0
    cdef real_t sg
    for i in range(k):
        s += g[i]
    sg = <real_t>s
    for i in range(k):
        gx[i] = g[i] - _exp(y[i]) * sg


cdef enum _RowOp:
    _SOFTMAX
    _SOFTMAX_BACKWARD
    _LOG_SOFTMAX
    _LOG_SOFTMAX_BACKWARD


cdef inline void _row(_RowOp op, const real_t* a, const real_t* b, real_t* out, Py_ssize_t k,
                      real_t beta) noexcept nogil:
    if op == _SOFTMAX:
        _softmax_row(a, out, k, beta)
    elif op == _SOFTMAX_BACKWARD:
        _softmax_backward_row(a, b, out, k, beta)
    elif op == _LOG_SOFTMAX:
        _log_softmax_row(a, out, k)
    else:
        _log_softmax_backward_row(a, b, out, k)


cdef void _rows(_RowOp op, const real_t[:, ::1] a, const real_t[:, ::1] b,
                real_t[:, ::1] out, double beta, int n_threads) noexcept:
    """Apply a row op to every row; rows are independent, so prange over them is race-free."""
    cdef Py_ssize_t rows = out.shape[0]
    cdef Py_ssize_t k = out.shape[1]
    cdef Py_ssize_t r
    cdef real_t bt = <real_t>beta
    if rows == 0 or k == 0:
        return
    cdef double t0
    if (n_threads > 1 or trace_active()) and rows > 1 and rows * k >= SERIAL_BELOW:
        for r in prange(rows, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            _row(op, &a[r, 0], &b[r, 0], &out[r, 0], k, bt)
            unit_end(b"rows", r, rows, t0)
    else:
        with nogil:
            for r in range(rows):
                _row(op, &a[r, 0], &b[r, 0], &out[r, 0], k, bt)


def softmax_forward(const real_t[:, ::1] x,   # IN  (rows, k)
                    double beta,
                    real_t[:, ::1] y,         # OUT (rows, k)
                    int n_threads):
    """y[r, i] = exp(beta x[r, i]) / sum_j exp(beta x[r, j])."""
    _rows(_SOFTMAX, x, x, y, beta, n_threads)


def softmax_backward(const real_t[:, ::1] y,          # IN  saved forward output
                     const real_t[:, ::1] grad_out,   # IN
                     double beta,
                     real_t[:, ::1] grad_x,           # OUT
                     int n_threads):
    """grad_x[r, i] = beta y[r, i] (grad_out[r, i] - sum_j grad_out[r, j] y[r, j])."""
    _rows(_SOFTMAX_BACKWARD, y, grad_out, grad_x, beta, n_threads)


def log_softmax_forward(const real_t[:, ::1] x,   # IN  (rows, k)
                        real_t[:, ::1] y,         # OUT (rows, k) log-probabilities
                        int n_threads):
    """y[r, i] = x[r, i] - log sum_j exp(x[r, j])."""
    _rows(_LOG_SOFTMAX, x, x, y, 1.0, n_threads)


def log_softmax_backward(const real_t[:, ::1] y,          # IN  saved log-probabilities
                         const real_t[:, ::1] grad_out,   # IN
                         real_t[:, ::1] grad_x,           # OUT
                         int n_threads):
    """grad_x[r, i] = grad_out[r, i] - exp(y[r, i]) sum_j grad_out[r, j]."""
    _rows(_LOG_SOFTMAX_BACKWARD, y, grad_out, grad_x, 1.0, n_threads)
