"""Per-image rotation of a batch (bilinear, zero outside) and its exact adjoint."""
import numpy as np

from .._kernels import _rotate as _kernel
from .._threads import effective_n_threads
from .._validation import check_array, check_out

__all__ = ["rotate_forward", "rotate_backward"]

_LAYOUT = "(N, C, H, W)"


def _check_angles(fn, angles, n):
    """Return ``(cos, sin)`` of the angles as contiguous float64 arrays of shape ``(n,)``."""
    if not isinstance(angles, np.ndarray):
        raise TypeError(f"{fn}: angles must be a numpy.ndarray; got {type(angles).__name__}")
    if angles.ndim != 1:
        raise ValueError(f"{fn}: angles must be 1-D (N,); got shape {angles.shape}")
    if angles.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: angles must have an integer or floating dtype; "
                        f"got {angles.dtype}")
    if angles.shape[0] != n:
        raise ValueError(f"{fn}: angles must have shape ({n},) to match the batch; "
                         f"got shape {angles.shape}")
    angles = angles.astype(np.float64)
    if not np.all(np.isfinite(angles)):
        raise ValueError(f"{fn}: angles must be finite; got {angles[~np.isfinite(angles)][0]}")
    return np.ascontiguousarray(np.cos(angles)), np.ascontiguousarray(np.sin(angles))


def _apply(fn, kernel, x, name, angles, out, n_threads):
    x = check_array(fn, name, x, ndim=4, layout=_LAYOUT)
    cos_t, sin_t = _check_angles(fn, angles, x.shape[0])
    out = check_out(fn, out, x.shape, x.dtype, inputs=(x,))
    n = effective_n_threads(n_threads)
    if x.size == 0:
        return out
    kernel(x, cos_t, sin_t, out, n)
    return out


def rotate_forward(x, angles, *, out=None, n_threads=None):
    """Rotate each image of a batch counter-clockwise by its own angle.

    Every image (all its channels) turns about the centre of its pixel grid,
    ``((H-1)/2, (W-1)/2)``, counter-clockwise as displayed with row 0 at the top, so an
    angle of pi/2 gives ``np.rot90(x[n], 1, axes=(-2, -1))`` on square images. Each output
    pixel samples the input bilinearly at its inversely rotated position; neighbours outside
    the image count as zero (per tap), so corners fade to 0.

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
    return _apply("rotate_forward", _kernel.rotate_forward, x, "x", angles, out, n_threads)


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
    return _apply("rotate_backward", _kernel.rotate_backward, grad_out, "grad_out", angles,
                   out, n_threads)
