# Batched image rotation by per-image angles, and its exact adjoint.
#
# Ops        rotate_forward  : y[n, c] = x[n, c] rotated counter-clockwise by angle[n] about
#                              the pixel-grid centre, bilinear, zero outside the image.
#            rotate_backward : grad_x = R^T grad_out, the transpose of that linear map.
# Layout     NCHW, C-contiguous; every (n, c) plane is an independent row-major (h, w) image.
# Dtypes     real_t (float32 / float64) images; coordinates, weights and the gather sum are
#            computed in double whatever the image dtype.
# Geometry   Inverse mapping: each output pixel (i, j) reads the source point obtained by
#            rotating it by -angle about (ci, cj) = ((h-1)/2, (w-1)/2). With row 0 at the top
#            the display y axis points up, so in index coordinates
#                r = ci + (i - ci) cos t + (j - cj) sin t
#                s = cj - (i - ci) sin t + (j - cj) cos t
#            which makes t = pi/2 equal np.rot90(x, 1, axes=(-2, -1)) on square planes.
#            Sampling: _interp.pxd (per-tap zero padding).
# Threading  prange over the n*c planes. Forward planes are independent; backward scatters
#            each grad_out plane only into the grad_x plane of the same (n, c), so no two
#            threads ever write the same element and the result does not depend on the thread
#            count. Tiny inputs run serially.
# Saved      Nothing: the map is linear in x, backward needs only the angles (as cos, sin).
from cython.parallel cimport prange

import numpy as np

from ._types cimport real_t
from ._interp cimport bilinear_gather, bilinear_scatter
from ._trace cimport trace_active, unit_begin, unit_end

# Below this many output pixels a thread team costs more than it saves.
cdef Py_ssize_t _PARALLEL_MIN_PIXELS = 16384


cdef void _rotate_plane_forward(const real_t* src, real_t* dst, Py_ssize_t h, Py_ssize_t w,
                                double cos_t, double sin_t) noexcept nogil:
    cdef double ci = 0.5 * (h - 1)
    cdef double cj = 0.5 * (w - 1)
    cdef double r_base, s_base, dj
    cdef Py_ssize_t i, j
    for i in range(h):
        r_base = ci + (i - ci) * cos_t
        s_base = cj - (i - ci) * sin_t
        for j in range(w):
            dj = j - cj
            dst[i * w + j] = <real_t>bilinear_gather(src, h, w, r_base + dj * sin_t,
                                                     s_base + dj * cos_t)


cdef void _rotate_plane_backward(const real_t* grad_out, real_t* grad_x, Py_ssize_t h,
                                 Py_ssize_t w, double cos_t, double sin_t) noexcept nogil:
    cdef double ci = 0.5 * (h - 1)
    cdef double cj = 0.5 * (w - 1)
    cdef double r_base, s_base, dj
    cdef Py_ssize_t i, j
    for i in range(h * w):
        grad_x[i] = 0
    for i in range(h):
        r_base = ci + (i - ci) * cos_t
        s_base = cj - (i - ci) * sin_t
        for j in range(w):
            dj = j - cj
            bilinear_scatter(grad_x, h, w, r_base + dj * sin_t, s_base + dj * cos_t,
                             grad_out[i * w + j])


def rotate_forward(const real_t[:, :, :, ::1] x not None,  # IN  (n, c, h, w)
                   const double[::1] cos_t not None,       # IN  (n,) cos(angle[n])
                   const double[::1] sin_t not None,       # IN  (n,) sin(angle[n])
                   real_t[:, :, :, ::1] y not None,        # OUT (n, c, h, w)
                   int n_threads):
    """y[n,c,i,j] = bilinear(x[n,c], R(-angle[n]) ((i,j) - centre) + centre), 0 outside."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t p, nc = n * c
    cdef double t0
    if nc * h * w == 0:
        return np.asarray(y)
    if (n_threads > 1 or trace_active()) and nc > 1 and nc * h * w >= _PARALLEL_MIN_PIXELS:
        for p in prange(nc, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            _rotate_plane_forward(&x[p // c, p % c, 0, 0], &y[p // c, p % c, 0, 0],
                                  h, w, cos_t[p // c], sin_t[p // c])
            unit_end(b"rotate_forward", p, nc, t0)
    else:
        with nogil:
            for p in range(nc):
                _rotate_plane_forward(&x[p // c, p % c, 0, 0], &y[p // c, p % c, 0, 0],
                                      h, w, cos_t[p // c], sin_t[p // c])
    return np.asarray(y)


def rotate_backward(const real_t[:, :, :, ::1] grad_out not None,  # IN  (n, c, h, w)
                    const double[::1] cos_t not None,              # IN  (n,)
                    const double[::1] sin_t not None,              # IN  (n,)
                    real_t[:, :, :, ::1] grad_x not None,          # OUT (n, c, h, w)
                    int n_threads):
    """grad_x = R^T grad_out: each grad_out pixel scatters its bilinear weights into grad_x."""
    cdef Py_ssize_t n = grad_out.shape[0], c = grad_out.shape[1]
    cdef Py_ssize_t h = grad_out.shape[2], w = grad_out.shape[3]
    cdef Py_ssize_t p, nc = n * c
    cdef double t0
    if nc * h * w == 0:
        return np.asarray(grad_x)
    if (n_threads > 1 or trace_active()) and nc > 1 and nc * h * w >= _PARALLEL_MIN_PIXELS:
        for p in prange(nc, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            _rotate_plane_backward(&grad_out[p // c, p % c, 0, 0],
                                   &grad_x[p // c, p % c, 0, 0],
                                   h, w, cos_t[p // c], sin_t[p // c])
            unit_end(b"rotate_backward", p, nc, t0)
    else:
        with nogil:
            for p in range(nc):
                _rotate_plane_backward(&grad_out[p // c, p % c, 0, 0],
                                       &grad_x[p // c, p % c, 0, 0],
                                       h, w, cos_t[p // c], sin_t[p // c])
    return np.asarray(grad_x)
