# Batched affine warp of images by one 2x3 inverse matrix per image, and its exact adjoint.
# Rotation is the special case theta = [[cos t, sin t, 0], [-sin t, cos t, 0]].
#
# Ops        affine_forward  : y[n, c] = x[n, c] sampled at theta[n] applied to each output
#                              pixel (about the pixel-grid centre), bilinear, zero outside.
#            affine_backward : grad_x = A^T grad_out, the transpose of that linear map.
# Layout     NCHW, C-contiguous; every (n, c) plane is an independent row-major (h, w) image.
#            theta is (n, 2, 3) float64, C-contiguous.
# Dtypes     real_t (float32 / float64) images; coordinates, weights and the gather sum are
#            computed in double whatever the image dtype.
# Geometry   Inverse mapping in index coordinates (row, col) measured from the centre
#            (ci, cj) = ((h-1)/2, (w-1)/2): output pixel (i, j), di = i - ci, dj = j - cj,
#            reads the source point
#                r = (ci + theta[0,2] + di theta[0,0]) + dj theta[0,1]
#                s = (cj + theta[1,2] + di theta[1,0]) + dj theta[1,1]
#            The row part in brackets is computed once per row. With theta[:, 2] = 0 these are
#            the operations (and so the bits) of the former rotation-only kernel:
#            ci + 0.0 is ci, and a + b (-sin) is a - b sin in IEEE arithmetic.
#            The centre-relative form keeps rotation and scaling about the image centre free of
#            cancellation (an absolute offset ci - ci cos t - cj sin t would round differently).
#            Sampling: _interp.pxd (per-tap zero padding).
# Threading  prange over the n*c planes. Forward planes are independent; backward scatters
#            each grad_out plane only into the grad_x plane of the same (n, c), so no two
#            threads ever write the same element and the result does not depend on the thread
#            count. Tiny inputs run serially.
# Saved      Nothing: the map is linear in x, backward needs only theta.
from cython.parallel cimport prange

import numpy as np

from ._types cimport real_t
from ._interp cimport bilinear_gather, bilinear_scatter
from ._trace cimport trace_active, unit_begin, unit_end

# Below this many output pixels a thread team costs more than it saves.
cdef Py_ssize_t _PARALLEL_MIN_PIXELS = 16384


cdef void _affine_plane_forward(const real_t* src, real_t* dst, Py_ssize_t h, Py_ssize_t w,
                                const double* a) noexcept nogil:
    cdef double ci = 0.5 * (h - 1)
    cdef double cj = 0.5 * (w - 1)
    # Locals, not a[k] in the loops: a store to a double plane could alias theta, which would
    # make the compiler reload the matrix on every pixel.
    cdef double a00 = a[0], a01 = a[1], a10 = a[3], a11 = a[4]
    cdef double r0 = ci + a[2]
    cdef double s0 = cj + a[5]
    cdef double r_base, s_base, dj
    cdef Py_ssize_t i, j
    for i in range(h):
        r_base = r0 + (i - ci) * a00
        s_base = s0 + (i - ci) * a10
        for j in range(w):
            dj = j - cj
            dst[i * w + j] = <real_t>bilinear_gather(src, h, w, r_base + dj * a01,
                                                     s_base + dj * a11)


cdef void _affine_plane_backward(const real_t* grad_out, real_t* grad_x, Py_ssize_t h,
                                 Py_ssize_t w, const double* a) noexcept nogil:
    cdef double ci = 0.5 * (h - 1)
    cdef double cj = 0.5 * (w - 1)
    cdef double a00 = a[0], a01 = a[1], a10 = a[3], a11 = a[4]
    cdef double r0 = ci + a[2]
    cdef double s0 = cj + a[5]
    cdef double r_base, s_base, dj
    cdef Py_ssize_t i, j
    for i in range(h * w):
        grad_x[i] = 0
    for i in range(h):
        r_base = r0 + (i - ci) * a00
        s_base = s0 + (i - ci) * a10
        for j in range(w):
            dj = j - cj
            bilinear_scatter(grad_x, h, w, r_base + dj * a01, s_base + dj * a11,
                             grad_out[i * w + j])


def affine_forward(const real_t[:, :, :, ::1] x not None,  # IN  (n, c, h, w)
                   const double[:, :, ::1] theta not None, # IN  (n, 2, 3) inverse maps
                   real_t[:, :, :, ::1] y not None,        # OUT (n, c, h, w)
                   int n_threads):
    """y[n,c,i,j] = bilinear(x[n,c], centre + theta[n] [(i,j) - centre; 1]), 0 outside."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t p, nc = n * c
    cdef double t0
    if nc * h * w == 0:
        return np.asarray(y)
    if (n_threads > 1 or trace_active()) and nc > 1 and nc * h * w >= _PARALLEL_MIN_PIXELS:
        for p in prange(nc, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            _affine_plane_forward(&x[p // c, p % c, 0, 0], &y[p // c, p % c, 0, 0],
                                  h, w, &theta[p // c, 0, 0])
            unit_end(b"affine_forward", p, nc, t0)
    else:
        with nogil:
            for p in range(nc):
                _affine_plane_forward(&x[p // c, p % c, 0, 0], &y[p // c, p % c, 0, 0],
                                      h, w, &theta[p // c, 0, 0])
    return np.asarray(y)


def affine_backward(const real_t[:, :, :, ::1] grad_out not None,  # IN  (n, c, h, w)
                    const double[:, :, ::1] theta not None,        # IN  (n, 2, 3)
                    real_t[:, :, :, ::1] grad_x not None,          # OUT (n, c, h, w)
                    int n_threads):
    """grad_x = A^T grad_out: each grad_out pixel scatters its bilinear weights into grad_x."""
    cdef Py_ssize_t n = grad_out.shape[0], c = grad_out.shape[1]
    cdef Py_ssize_t h = grad_out.shape[2], w = grad_out.shape[3]
    cdef Py_ssize_t p, nc = n * c
    cdef double t0
    if nc * h * w == 0:
        return np.asarray(grad_x)
    if (n_threads > 1 or trace_active()) and nc > 1 and nc * h * w >= _PARALLEL_MIN_PIXELS:
        for p in prange(nc, schedule='static', nogil=True, num_threads=n_threads):
            t0 = unit_begin()
            _affine_plane_backward(&grad_out[p // c, p % c, 0, 0],
                                   &grad_x[p // c, p % c, 0, 0],
                                   h, w, &theta[p // c, 0, 0])
            unit_end(b"affine_backward", p, nc, t0)
    else:
        with nogil:
            for p in range(nc):
                _affine_plane_backward(&grad_out[p // c, p % c, 0, 0],
                                       &grad_x[p // c, p % c, 0, 0],
                                       h, w, &theta[p // c, 0, 0])
    return np.asarray(grad_x)
