"""The header of a ``.npy`` array, read and checked before its data.

``np.load`` allocates whatever a header declares before it reads a byte of data, so a
60-byte file declaring 10^12 elements is a MemoryError (or worse). Model files, checkpoints
and image arrays read the header with :func:`read_npy_header` first and compare the declared
size with the bytes really there.
"""
from tokenize import TokenError

__all__ = ["read_npy_header", "NpyHeaderError", "NPY_MAX_HEADER"]

#: Longest ``.npy`` header accepted (NumPy's own default for untrusted files).
NPY_MAX_HEADER = 10000


class NpyHeaderError(ValueError):
    """A ``.npy`` header that declares something the stream does not hold (or that
    fastconv refuses to read); the message names the entry and says what."""


def read_npy_header(fp, size, name):
    """Read the header of a ``.npy`` stream and check it against the stream's ``size``.

    Parameters
    ----------
    fp : file object
        Positioned at the start of the ``.npy`` data; left after the header.
    size : int
        Bytes the stream holds (a zip member's size, a file's size).
    name : str
        The entry, for error messages.

    Returns
    -------
    shape : tuple of int
    dtype : numpy.dtype
    fortran_order : bool

    Raises
    ------
    NpyHeaderError
        An object (pickled) dtype, or a declared shape whose bytes
        differ from what the stream holds (a header that lies about its size).
    """
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(fp, max_header_size=NPY_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(fp, max_header_size=NPY_MAX_HEADER)
        else:
            raise NpyHeaderError(f"{name}: unsupported .npy version {version}")
    except NpyHeaderError:
        raise
    except (ValueError, SyntaxError, TokenError, TypeError, KeyError, OverflowError,
            RecursionError) as exc:
        # NumPy parses the header as a Python literal: damaged bytes raise any of these.
        raise NpyHeaderError(f"{name} has no valid .npy header ({type(exc).__name__}: "
                             f"{exc})") from None
    if dtype.hasobject:
        raise NpyHeaderError(f"{name} holds Python objects (pickled data), which are refused")
    count = 1
    for d in shape:
        count *= d
    declared = count * dtype.itemsize
    if declared != size - fp.tell():
        raise NpyHeaderError(f"{name} declares shape {shape} of {dtype} ({declared:,} bytes) but "
                         f"holds {max(size - fp.tell(), 0):,} bytes")
    return shape, dtype, fortran
