# Inline bilinear sampling on one row-major (h, w) plane, shared by warping kernels.
#
# Out-of-image samples use per-tap zero padding: each of the four neighbours of a sample
# contributes its weight times its value when it lies inside the plane and nothing otherwise
# (scipy.ndimage's mode='grid-constant', cval=0). The sampled surface is therefore continuous
# across the image edge and fades to 0 over one pixel outside it:
#
#     plane row       0    0 | a    b    c | 0    0
#     sample at     -1  -0.5   0   0.5  ...  2.5   3
#     value          0  a/2    a  (a+b)/2    c/2   0
#
# Gather and scatter compute the taps with the same expressions, so a warp built on
# bilinear_gather has bilinear_scatter as its exact adjoint.
from libc.math cimport floor

from ._types cimport real_t


cdef inline double bilinear_gather(const real_t* plane, Py_ssize_t h, Py_ssize_t w,
                                   double r, double c) noexcept nogil:
    """Return sum_taps wt * plane[r0 + a, c0 + b] over the in-bounds taps of (r, c)."""
    cdef double fr0 = floor(r)
    cdef double fc0 = floor(c)
    cdef double dr = r - fr0
    cdef double dc = c - fc0
    cdef Py_ssize_t r0 = <Py_ssize_t>fr0
    cdef Py_ssize_t c0 = <Py_ssize_t>fc0
    cdef double acc = 0.0
    # Coordinates further than one pixel outside touch no tap; the early exit also keeps
    # r0 + 1 from overflowing for absurd coordinates.
    if r0 < -1 or r0 >= h or c0 < -1 or c0 >= w:
        return 0.0
    if r0 >= 0:
        if c0 >= 0:
            acc += (1.0 - dr) * (1.0 - dc) * plane[r0 * w + c0]
        if c0 + 1 < w:
            acc += (1.0 - dr) * dc * plane[r0 * w + c0 + 1]
    if r0 + 1 < h:
        if c0 >= 0:
            acc += dr * (1.0 - dc) * plane[(r0 + 1) * w + c0]
        if c0 + 1 < w:
            acc += dr * dc * plane[(r0 + 1) * w + c0 + 1]
    return acc


cdef inline void bilinear_scatter(real_t* plane, Py_ssize_t h, Py_ssize_t w,
                                  double r, double c, double v) noexcept nogil:
    """plane[r0 + a, c0 + b] += wt * v for the in-bounds taps of (r, c) (adjoint of gather)."""
    cdef double fr0 = floor(r)
    cdef double fc0 = floor(c)
    cdef double dr = r - fr0
    cdef double dc = c - fc0
    cdef Py_ssize_t r0 = <Py_ssize_t>fr0
    cdef Py_ssize_t c0 = <Py_ssize_t>fc0
    if r0 < -1 or r0 >= h or c0 < -1 or c0 >= w:
        return
    if r0 >= 0:
        if c0 >= 0:
            plane[r0 * w + c0] += <real_t>((1.0 - dr) * (1.0 - dc) * v)
        if c0 + 1 < w:
            plane[r0 * w + c0 + 1] += <real_t>((1.0 - dr) * dc * v)
    if r0 + 1 < h:
        if c0 >= 0:
            plane[(r0 + 1) * w + c0] += <real_t>(dr * (1.0 - dc) * v)
        if c0 + 1 < w:
            plane[(r0 + 1) * w + c0 + 1] += <real_t>(dr * dc * v)
