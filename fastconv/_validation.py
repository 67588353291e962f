"""Argument checks shared by every :mod:`fastconv.functional` entry point.

Everything here runs before a kernel enters ``nogil`` code. Messages name the calling function,
the argument, what was expected and what was given, e.g.
``conv2d_forward: x must be 4-D (N, C, H, W); got shape (28, 28)``.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Largest size, stride, padding or kernel extent a kernel accepts: BLAS and the convolution
# geometry count in C int, and a value past it would wrap around instead of failing.
MAX_EXTENT = 2**31 - 1


def check_dtype(dtype, fn=None, name="dtype"):
    """Return ``np.dtype(dtype)`` when it is float32 or float64, else a TypeError naming
    ``fn`` (when given) and ``name``: the one dtype check of the layers, the data loader and
    the functions that take a dtype argument."""
    prefix = f"{fn}: " if fn else ""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{prefix}{name} must be float32 or float64; got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{prefix}{name} must be float32 or float64; got {dt}")
    return dt


def check_array(fn, name, x, ndim=None, layout="", dtype=None, dtype_of=None):
    """Validate a float input array and return it C-contiguous.

    Parameters
    ----------
    fn, name : str
        Calling function and argument name, used in messages.
    x : object
        The argument.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    layout : str
        Human-readable layout for messages, e.g. ``"(N, C, H, W)"``.
    dtype : numpy.dtype, optional
        Required dtype (the dtype of another argument, named ``dtype_of``).

    Returns
    -------
    numpy.ndarray
        ``x`` itself when already C-contiguous, else a contiguous copy. Fortran-ordered,
        negative-stride and sliced views are copied, never read past.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray; got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            sep = " " if layout else ""
            raise ValueError(f"{fn}: {name} must be {want}{sep}{layout}; got shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name} must have dtype float32 or float64; got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{fn}: {name} must have the same dtype as {dtype_of} ({dtype}); "
                        f"got {x.dtype}")
    return np.ascontiguousarray(x)


def check_shape(fn, name, x, expected, layout=""):
    """Raise ValueError unless ``x.shape == expected``."""
    expected = tuple(int(s) for s in expected)
    if x.shape != expected:
        sep = " " if layout else ""
        raise ValueError(f"{fn}: {name} must have shape {expected}{sep}{layout}; "
                         f"got shape {x.shape}")


def check_out(fn, out, shape, dtype, inputs=(), name="out"):
    """Return a writeable output buffer of exactly ``shape`` and ``dtype``.

    ``out=None`` allocates. A given buffer is used as is: it must already be C-contiguous,
    writeable, of the exact shape and dtype, and must not overlap any input, because a
    silent copy would lose the result.
    """
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray or None; got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{fn}: {name} must have dtype {np.dtype(dtype)}; got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{fn}: {name} must have shape {shape}; got shape {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: {name} must be writeable")
    for x in inputs:
        if x is not None and np.shares_memory(out, x):
            raise ValueError(f"{fn}: {name} must not share memory with an input")
    return out


def check_int(fn, name, v, minimum=None, maximum=None):
    """Return ``v`` as a Python int, rejecting bools, floats and values outside
    ``[minimum, maximum]``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer; got {type(v).__name__} {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}; got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{fn}: {name} must be <= {maximum}; got {v}")
    return v


def check_float(fn, name, v, minimum=None, maximum=None, finite=True,
                min_inclusive=True, max_inclusive=True):
    """Return ``v`` as a Python float within the given bounds."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {type(v).__name__} {v!r}")
    v = float(v)
    if finite and not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite; got {v}")
    if minimum is not None and (v < minimum or (not min_inclusive and v == minimum)):
        op = ">=" if min_inclusive else ">"
        raise ValueError(f"{fn}: {name} must be {op} {minimum}; got {v}")
    if maximum is not None and (v > maximum or (not max_inclusive and v == maximum)):
        op = "<=" if max_inclusive else "<"
        raise ValueError(f"{fn}: {name} must be {op} {maximum}; got {v}")
    return v


def check_float_pair(fn, name, v, minimum=None, maximum=None, min_inclusive=True):
    """Return a pair (tuple or list of two reals) as a tuple of two floats within the given
    bounds (a range such as ``scale=(0.9, 1.1)``)."""
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{fn}: {name} must be a pair of numbers; got {v!r}")
    return tuple(check_float(fn, name, e, minimum=minimum, maximum=maximum,
                             min_inclusive=min_inclusive) for e in v)


def as_pair(fn, name, v, minimum, maximum=MAX_EXTENT):
    """Normalize an int or a pair of ints to ``(a, b)``, each in ``[minimum, maximum]``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints; got {v!r}")
        return (check_int(fn, name, v[0], minimum, maximum),
                check_int(fn, name, v[1], minimum, maximum))
    v = check_int(fn, name, v, minimum, maximum)
    return (v, v)


def output_size(fn, dim, size, kernel, stride, pad):
    """Size of a strided window output, ``(size + 2*pad - kernel) // stride + 1``.

    Raises ValueError when the kernel does not fit in the padded input, or when the padded
    input exceeds ``MAX_EXTENT`` (the kernels' index arithmetic would overflow).
    """
    if size + 2 * pad > MAX_EXTENT:
        raise ValueError(f"{fn}: padded input {dim} {size} + 2*{pad} = {size + 2 * pad} "
                         f"exceeds {MAX_EXTENT}; reduce the padding")
    if kernel > size + 2 * pad:
        raise ValueError(f"{fn}: kernel {dim} {kernel} is larger than the padded input "
                         f"{dim} {size} + 2*{pad} = {size + 2 * pad}")
    return (size + 2 * pad - kernel) // stride + 1


def check_target(fn, target, n, n_classes, name="target"):
    """Validate class labels: 1-D integers of length ``n`` in ``[0, n_classes)``."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray of integer labels; "
                        f"got {type(target).__name__}")
    if target.ndim != 1:
        raise ValueError(f"{fn}: {name} must be 1-D (N,); got shape {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{fn}: {name} must have an integer dtype; got {target.dtype}")
    if target.shape[0] != n:
        raise ValueError(f"{fn}: {name} must have shape ({n},) to match the batch; "
                         f"got shape {target.shape}")
    if n and (target.min() < 0 or target.max() >= n_classes):
        bad = target[(target < 0) | (target >= n_classes)][0]
        raise ValueError(f"{fn}: {name} labels must lie in [0, {n_classes}); got {bad}")
    return np.ascontiguousarray(target, dtype=np.intp)
