"""Reading and writing IDX files, the format MNIST is distributed in.

An IDX file is a big-endian header followed by the raw array::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   each dimension as a big-endian uint32
    rest        the elements, C order, big-endian

MNIST's image files therefore start with the magic number 0x00000803 (uint8, 3-D) and its
label files with 0x00000801 (uint8, 1-D).

Every problem found here raises :class:`DataFileError`, which names the file: a bad file must
stop loading with a message the user can act on, never reach training as garbage.
"""
import gzip
import os
import zlib

import numpy as np

from .._errors import PathError

__all__ = ["DataFileError", "read_idx", "write_idx"]

_TYPE_CODES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in _TYPE_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class DataFileError(PathError):
    """A data file is corrupt, truncated, or not the file that was expected (``path``,
    ``problem``)."""


# The largest file an IDX header may declare. MNIST's largest is 47 MB; a header claiming
# more than this is refused before anything is inflated, so that a small compressed file
# cannot make the reader allocate gigabytes (a "gzip bomb").
MAX_IDX_BYTES = 1 << 30


def _kind_of(start, path):
    """What a file starting with ``start`` seems to hold, in words: never its bytes, which
    may be anything a link points to (a key, a password file)."""
    lower = start.lstrip().lower()
    if lower.startswith((b"<html", b"<!doctype html", b"<?xml", b"<head", b"<body")):
        kind = "an HTML page: a web server's answer, not the file"
    elif not start:
        kind = "it is empty"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in start):
        kind = "it holds text"
    else:
        kind = "it holds other binary data"
    if os.path.islink(path):
        kind += f"; it is a link to {os.path.realpath(path)}"
    return kind


def read_bytes(path, gz=None, max_bytes=MAX_IDX_BYTES):
    """Return the bytes of the IDX file ``path``, decompressed when it is gzip.

    The header is read first and the body only up to the size the header declares (plus one
    byte, so that :func:`parse_idx` can report trailing bytes): a file never inflates more
    than it claims, and a claim above ``max_bytes`` is refused at once. A file that is not
    IDX at all yields just its first bytes, for :func:`parse_idx` to reject.

    Gzip is recognised by its magic bytes rather than the file name, so a mirror that serves
    an HTML page under a ``.gz`` name is reported as "not a gzip file", not as a zlib error.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.
    gz : bool, optional
        Whether gzip is required; default: when the name ends in ``.gz``. Downloads pass it
        explicitly because their temporary files have other names.
    max_bytes : int
        Largest uncompressed size a header may declare.

    Raises
    ------
    DataFileError
        If the file is gzip but truncated or corrupt, must be gzip but is not, or declares
        more than ``max_bytes``.
    """
    if gz is None:
        gz = os.fspath(path).endswith(".gz")
    with open(path, "rb") as f:
        start = f.read(40)
        f.seek(0)
        if start[:2] != _GZIP_MAGIC:
            if gz:
                raise DataFileError(path, f"not a gzip file ({_kind_of(start, path)})")
            return _read_bounded(f.read, path, max_bytes)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as stream:
                return _read_bounded(stream.read, path, max_bytes)
        except EOFError:
            raise DataFileError(path, "truncated gzip file (compressed stream ends early)") \
                from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise DataFileError(path, f"corrupt gzip file ({exc})") from None


def _read_bounded(read, path, max_bytes):
    """Header, then at most the declared body plus one byte, through ``read(n)``."""
    data = read(4)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPE_CODES:
        return data
    data += read(4 * data[3])
    if len(data) < 4 + 4 * data[3]:
        return data
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3]))
    size = _TYPE_CODES[data[2]].itemsize
    for d in shape:
        size *= d
    if size > max_bytes:
        raise DataFileError(path, f"header declares shape {shape} of "
                                  f"{_TYPE_CODES[data[2]].name}: {size} bytes, more than the "
                                  f"{max_bytes}-byte limit of an IDX file")
    return data + read(size + 1)


def parse_idx(data, path="<bytes>"):
    """Parse the bytes of an uncompressed IDX file into an array.

    Parameters
    ----------
    data : bytes
        Complete file content.
    path : str
        File name used in error messages.

    Returns
    -------
    numpy.ndarray
        Native byte order, shape given by the header. Read-only view of ``data`` for uint8
        and int8 files (no copy of a 47 MB image file).

    Raises
    ------
    DataFileError
        On a bad magic number, unknown element type, or a size that disagrees with the header.
    """
    if len(data) < 4:
        raise DataFileError(path, f"too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _TYPE_CODES:
        magic = int.from_bytes(data[:4], "big")
        raise DataFileError(path, f"not an IDX file: bad magic number 0x{magic:08X}")
    dtype = _TYPE_CODES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(path, f"truncated IDX header: {ndim} dimensions need {header} "
                                  f"bytes, file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise DataFileError(path, f"{what}: header shape {shape} of {dtype.name} needs "
                                  f"{expected} bytes, file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path):
    """Read an IDX file, gzip-compressed or not, into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File to read; compression is detected from the content.

    Returns
    -------
    numpy.ndarray
        Array with the shape and element type the header declares (native byte order).

    Raises
    ------
    DataFileError
        If the file is truncated, corrupt, or not IDX; the message names the file.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")   # doctest: +SKIP
    >>> images.shape, images.dtype                         # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    return parse_idx(read_bytes(path), os.fspath(path))


def idx_bytes(array):
    """Return the uncompressed IDX encoding of ``array``."""
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.ndim > 255:
        raise ValueError(f"write_idx: cannot store dtype {array.dtype} with {array.ndim} "
                         f"dimensions in IDX")
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=_TYPE_CODES[code]).tobytes()


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file, gzip-compressed when the name ends in ``.gz``.

    Compression is deterministic (no time stamp, no embedded name), so the same array always
    gives the same bytes and cut test data can be regenerated bit for bit.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    array : array_like
        uint8, int8, int16, int32, float32 or float64 data.
    compress : bool, optional
        Force gzip on or off; default from the file name.

    Returns
    -------
    bytes
        The uncompressed IDX bytes that were written (hash them for a sha256 table).
    """
    raw = idx_bytes(array)
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with open(path, "wb") as f:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
                gz.write(raw)
        else:
            f.write(raw)
    return raw
