"""Per-image affine warps of a batch (bilinear, zero outside) and their exact adjoint.

One kernel serves both: :func:`affine_forward` takes one 2x3 inverse matrix per image, and
:func:`rotate_forward` is the rotation special case (the same bits as before the kernel was
generalized). :func:`affine_matrices` builds the matrices of a rotation, shear, scaling and
shift, which is what :class:`fastconv.nn.RandomAffine` draws.

Coordinates are array indices (row, col), measured from the centre of the pixel grid,
``((H-1)/2, (W-1)/2)``; "counter-clockwise" and "up" refer to the image as displayed, with
row 0 at the top.
"""
import numpy as np

from .._kernels import _rotate as _kernel
from .._threads import effective_n_threads
from .._validation import check_array, check_out

__all__ = ["rotate_forward", "rotate_backward", "affine_forward", "affine_backward",
           "affine_matrices"]

_LAYOUT = "(N, C, H, W)"


def _check_per_image(fn, name, values, n, shape_tail=(), layout="(N,)"):
    """Return ``values`` as a contiguous float64 array of shape ``(n,) + shape_tail``
    (any n when ``n`` is None)."""
    if not isinstance(values, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray; got {type(values).__name__}")
    if values.ndim != 1 + len(shape_tail):
        raise ValueError(f"{fn}: {name} must be {1 + len(shape_tail)}-D {layout}; "
                         f"got shape {values.shape}")
    if values.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: {name} must have an integer or floating dtype; "
                        f"got {values.dtype}")
    expected = (values.shape[0] if n is None else n,) + tuple(shape_tail)
    if values.shape != expected:
        what = "to match the batch" if values.shape[1:] == tuple(shape_tail) else layout
        raise ValueError(f"{fn}: {name} must have shape {expected} {what}; "
                         f"got shape {values.shape}")
    values = np.ascontiguousarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{fn}: {name} must be finite; got {values[~np.isfinite(values)][0]}")
    return values


def _rotation_theta(fn, angles, n):
    """The inverse maps ``[[cos t, sin t, 0], [-sin t, cos t, 0]]`` of rotations by t."""
    angles = _check_per_image(fn, "angles", angles, n)
    cos_t, sin_t = np.cos(angles), np.sin(angles)
    theta = np.zeros((angles.shape[0], 2, 3))
    theta[:, 0, 0] = cos_t
    theta[:, 0, 1] = sin_t
    theta[:, 1, 0] = -sin_t
    theta[:, 1, 1] = cos_t
    return theta


# Largest source coordinate a warp may produce. The kernel converts floor(coordinate) to an
# integer, which is undefined for values past the integer range; anything beyond one pixel
# outside the image samples zeros anyway, so this only refuses degenerate matrices.
_MAX_COORDINATE = 2.0 ** 40


def _check_theta(fn, theta, shape):
    """``theta`` validated (N, 2, 3) float64, with every mapped pixel within the bound."""
    theta = _check_per_image(fn, "theta", theta, shape[0], (2, 3), "(N, 2, 3)")
    if theta.size:
        ci, cj = 0.5 * (shape[2] - 1), 0.5 * (shape[3] - 1)
        # The map is affine, so |coordinate| peaks at a corner of the grid.
        reach = (np.abs(theta[:, :, 0]) * ci + np.abs(theta[:, :, 1]) * cj
                 + np.abs(theta[:, :, 2]) + max(ci, cj))
        if reach.max() > _MAX_COORDINATE:
            k = int(np.argmax(reach.max(axis=1)))
            raise ValueError(f"{fn}: theta must map the image grid within +-2**40 pixels; "
                             f"theta[{k}] reaches {reach[k].max():.3g}")
    return theta


def _apply(fn, kernel, x, name, theta_of, out, n_threads):
    x = check_array(fn, name, x, ndim=4, layout=_LAYOUT)
    theta = theta_of(x.shape)
    out = check_out(fn, out, x.shape, x.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if x.size == 0:
        return out
    kernel(x, theta, out, n)
    return out


def affine_forward(x, theta, *, out=None, n_threads=None):
    """Warp each image of a batch by its own affine map (given as the inverse map).

    Each output pixel samples the input bilinearly at the point ``theta[n]`` maps it to;
    neighbours outside the image count as zero (per tap), so borders fade to 0 over one
    pixel. ``theta`` is the *inverse* of the transform seen on the image: use
    :func:`affine_matrices` to build it from a rotation, shear, scale and shift.

    Parameters
    ----------
    x : numpy.ndarray
        Images, float32 or float64, shape (N, C, H, W).
    theta : numpy.ndarray
        Inverse maps, shape (N, 2, 3), any integer or floating dtype (used as float64); must
        be finite. Acting on (row, col) offsets from the grid centre ``c = ((H-1)/2,
        (W-1)/2)``: output pixel ``p`` reads ``c + theta[n, :, :2] @ (p - c) + theta[n, :, 2]``.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result; must not overlap x.
    n_threads : int, optional
        Thread count (see :func:`fastconv.set_num_threads`); the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        y, same shape and dtype as x.

    Shape:
        x (N, C, H, W), theta (N, 2, 3) -> y (N, C, H, W).

    Math: ``y[n,c,i,j] = x[n,c](c + A (i - ci, j - cj) + b)``, ``[A | b] = theta[n]``,
    sampled bilinearly. In ``scipy.ndimage.affine_transform`` terms (``mode='grid-constant'``,
    ``order=1``): ``matrix = A``, ``offset = c + b - A c``.
    """
    fn = "affine_forward"
    return _apply(fn, _kernel.affine_forward, x, "x",
                  lambda shape: _check_theta(fn, theta, shape),
                  out, n_threads)


def affine_backward(grad_out, theta, *, out=None, n_threads=None):
    """Gradient of :func:`affine_forward` with respect to x (its exact transpose).

    The warp is linear in x, so the gradient does not depend on x: every ``grad_out`` pixel
    scatters its four bilinear weights back onto the input pixels it was sampled from.

    Parameters
    ----------
    grad_out : numpy.ndarray
        Gradient with respect to y, float32 or float64, shape (N, C, H, W).
    theta : numpy.ndarray
        The inverse maps given to :func:`affine_forward`, shape (N, 2, 3).
    out : numpy.ndarray, optional
        C-contiguous buffer of grad_out's shape and dtype for the result.
    n_threads : int, optional
        Thread count (see :func:`fastconv.set_num_threads`); the result does not depend on it.

    Returns
    -------
    numpy.ndarray
        grad_x, same shape and dtype as grad_out.

    Shape:
        grad_out (N, C, H, W), theta (N, 2, 3) -> grad_x (N, C, H, W).

    Math: ``grad_x = W(theta)^T grad_out``, i.e. ``<affine_forward(u), v> = <u, grad_x(v)>``.
    """
    fn = "affine_backward"
    return _apply(fn, _kernel.affine_backward, grad_out, "grad_out",
                  lambda shape: _check_theta(fn, theta, shape),
                  out, n_threads)


def affine_matrices(angles, *, scale=None, shear=None, shift=None):
    """Inverse maps, for :func:`affine_forward`, of rotations, shears, scalings and shifts.

    The transform seen on image n moves a point ``p`` (row, col offset from the grid centre)
    to ``R(angle) S(shear) (scale p) + shift``: first an isotropic scaling, then a horizontal
    shear, then a rotation, all about the centre, then a shift. ``R(t)`` turns
    counter-clockwise as displayed (the convention of :func:`rotate_forward`); ``S(s)`` moves
    each point right by ``tan(s)`` times its height above the centre (s > 0 slants the image
    like italics).

    Parameters
    ----------
    angles : numpy.ndarray
        Rotation angles in radians, shape (N,).
    scale : numpy.ndarray, optional
        Scale factors, shape (N,), > 0 (> 1 enlarges). Default 1.
    shear : numpy.ndarray, optional
        Shear angles in radians, shape (N,), in (-pi/2, pi/2). Default 0.
    shift : numpy.ndarray, optional
        Shifts in pixels, shape (N, 2): rows down, then columns right. Default 0.

    Returns
    -------
    numpy.ndarray
        theta, float64, shape (N, 2, 3): the inverse maps ``p -> M^-1 (p - shift)``.
        With only angles given, ``[[cos t, sin t, 0], [-sin t, cos t, 0]]`` exactly, as
        :func:`rotate_forward` uses.

    Shape:
        angles, scale, shear (N,), shift (N, 2) -> theta (N, 2, 3).
    """
    fn = "affine_matrices"
    theta = _rotation_theta(fn, angles, None)
    n = theta.shape[0]
    if shear is not None:
        shear = _check_per_image(fn, "shear", shear, n)
        if np.any(np.abs(shear) >= np.pi / 2):
            bad = shear[np.abs(shear) >= np.pi / 2][0]
            raise ValueError(f"{fn}: shear must lie in (-pi/2, pi/2); got {bad}")
        # M^-1 = S^-1 R^-1 / scale; S^-1 adds tan(s) times the row to the column, so
        # row 1 of R^-1 gains tan(s) times row 0.
        tan_s = np.tan(shear)
        theta[:, 1, :2] += tan_s[:, None] * theta[:, 0, :2]
    if scale is not None:
        scale = _check_per_image(fn, "scale", scale, n)
        if np.any(scale <= 0):
            raise ValueError(f"{fn}: scale must be > 0; got {scale[scale <= 0][0]}")
        theta[:, :, :2] /= scale[:, None, None]
    if shift is not None:
        shift = _check_per_image(fn, "shift", shift, n, (2,), "(N, 2)")
        theta[:, :, 2] = -np.einsum("nij,nj->ni", theta[:, :, :2], shift)
    return theta


def rotate_forward(x, angles, *, out=None, n_threads=None):
    """Rotate each image of a batch counter-clockwise by its own angle.

    Every image (all its channels) turns about the centre of its pixel grid,
    ``((H-1)/2, (W-1)/2)``, counter-clockwise as displayed with row 0 at the top, so an
    angle of pi/2 gives ``np.rot90(x[n], 1, axes=(-2, -1))`` on square images. Each output
    pixel samples the input bilinearly at its inversely rotated position; neighbours outside
    the image count as zero (per tap), so corners fade to 0. This is :func:`affine_forward`
    with ``theta = affine_matrices(angles)``.

    Parameters
    ----------
    x : numpy.ndarray
        Images, float32 or float64, shape (N, C, H, W).
    angles : numpy.ndarray
        Angles in radians, shape (N,), any integer or floating dtype (used as float64);
        must be finite.
    out : numpy.ndarray, optional
        C-contiguous buffer of x's shape and dtype for the result; must not overlap x.
    n_threads : int, optional
        Thread count (see :func:`fastconv.set_num_threads`).

    Returns
    -------
    numpy.ndarray
        y, same shape and dtype as x.

    Shape:
        x (N, C, H, W), angles (N,) -> y (N, C, H, W).

    Math: ``y[n,c,i,j] = x[n,c](ci + di cos t + dj sin t, cj - di sin t + dj cos t)`` with
    ``di = i - ci``, ``dj = j - cj``, ``t = angles[n]``, sampled bilinearly.
    """
    fn = "rotate_forward"
    return _apply(fn, _kernel.affine_forward, x, "x",
                  lambda shape: _rotation_theta(fn, angles, shape[0]), out, n_threads)


def rotate_backward(grad_out, angles, *, out=None, n_threads=None):
    """Gradient of :func:`rotate_forward` with respect to x (its exact transpose).

    The rotation is linear in x, so the gradient does not depend on x: every ``grad_out``
    pixel scatters its four bilinear weights back onto the input pixels it was sampled from.

    Parameters
    ----------
    grad_out : numpy.ndarray
        Gradient with respect to y, float32 or float64, shape (N, C, H, W).
    angles : numpy.ndarray
        The angles given to :func:`rotate_forward`, shape (N,).
    out : numpy.ndarray, optional
        C-contiguous buffer of grad_out's shape and dtype for the result.
    n_threads : int, optional
        Thread count (see :func:`fastconv.set_num_threads`).

    Returns
    -------
    numpy.ndarray
        grad_x, same shape and dtype as grad_out.

    Shape:
        grad_out (N, C, H, W), angles (N,) -> grad_x (N, C, H, W).

    Math: ``grad_x = R(angles)^T grad_out``, i.e. ``<rotate_forward(u), v> = <u, grad_x(v)>``.
    """
    fn = "rotate_backward"
    return _apply(fn, _kernel.affine_backward, grad_out, "grad_out",
                  lambda shape: _rotation_theta(fn, angles, shape[0]), out, n_threads)
