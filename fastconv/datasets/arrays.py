"""Any image classification set as NumPy arrays in one ``.npz`` file.

The file holds ``x`` (training images) and ``y`` (their labels), and optionally ``x_test``
and ``y_test``; nothing else. Images are (N, H, W) for one channel or (N, C, H, W), of an
integer or float dtype; labels are integer classes 0 .. K-1, shape (N,). Save one with::

    np.savez("mydata.npz", x=x_train, y=y_train, x_test=x_test, y_test=y_test)

The archive is read without pickles and within bounds: each entry's header is read first, an
array declaring more than :data:`MAX_ARRAY_BYTES` is refused before anything is inflated,
only the declared bytes are decompressed, and the zip's CRC is checked. Every problem raises
:class:`~fastconv.datasets.DataFileError` naming the file.
"""
import logging
import os
import zipfile
import zlib

import numpy as np

from .._validation import check_dtype
from ._dataset import Dataset, count_classes
from ._idx import DataFileError

__all__ = ["load_npz", "NPZ_KEYS", "MAX_ARRAY_BYTES"]

log = logging.getLogger("fastconv.datasets")

NPZ_KEYS = ("x", "y", "x_test", "y_test")
# The largest array an entry may declare (the real CIFAR-10 training set is 150 MB).
MAX_ARRAY_BYTES = 1 << 31
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Samples converted to float at a time: bounds the temporaries, not the result.
_BLOCK = 4096


def _read_entry(path, zf, info):
    """The array of one ``.npy`` entry, read within bounds."""
    key = info.filename[:-4]
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject or dtype.fields is not None:
            raise DataFileError(path, f"{key} has dtype {dtype}; a data set holds plain "
                                      f"numbers (no objects, no records)")
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise DataFileError(path, f"{key} declares shape {shape} of {dtype}: {nbytes} "
                                      f"bytes, more than the {MAX_ARRAY_BYTES}-byte limit")
        data = f.read(nbytes + 1)
        if len(data) < nbytes:
            raise DataFileError(path, f"{key} is truncated: shape {shape} of {dtype} needs "
                                      f"{nbytes} bytes, the entry has {len(data)}")
        if len(data) > nbytes:
            raise DataFileError(path, f"{key} has trailing bytes after its shape {shape} of "
                                      f"{dtype}")
    array = np.frombuffer(data, dtype=dtype, count=count)
    if fortran:
        return array.reshape(shape[::-1]).T
    return array.reshape(shape)


def _read_npz(path):
    """{key: array} of the allowed entries of the ``.npz`` at ``path``."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except IsADirectoryError:
        raise DataFileError(path, "is a folder, not an .npz file") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    if not head:
        raise DataFileError(path, "is empty (0 bytes)")
    if head not in _ZIP_MAGIC:
        raise DataFileError(path, f"not an .npz file (a NumPy zip archive); it starts with "
                                  f"{head!r}")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else None
                if key not in NPZ_KEYS:
                    raise DataFileError(path, f"has an entry {info.filename!r}; an .npz data "
                                              f"set holds only x, y, x_test and y_test")
                if key in arrays:
                    raise DataFileError(path, f"holds {key} twice")
                arrays[key] = _read_entry(path, zf, info)
    except DataFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
        raise DataFileError(path, f"truncated or corrupt .npz ({type(exc).__name__}: {exc})") \
            from None
    return arrays


def _check_images(path, key, x):
    if x.dtype.kind not in "uif":
        raise DataFileError(path, f"{key} has dtype {x.dtype}; images must be integers or "
                                  f"floats")
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise DataFileError(path, f"{key} has shape {x.shape}, which looks channels-last "
                                  f"(N, H, W, C); store (N, C, H, W): "
                                  f"{key}.transpose(0, 3, 1, 2)")
    if x.ndim not in (3, 4):
        raise DataFileError(path, f"{key} must be (N, H, W) or (N, C, H, W) images; got shape "
                                  f"{x.shape}")
    if min(x.shape[1:]) < 1:
        raise DataFileError(path, f"{key} has empty images: shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataFileError(path, f"{key} holds NaN or infinite values")
    return x if x.ndim == 4 else x[:, None]


def _check_labels(path, key, y, n, x_key):
    if y.ndim != 1 or y.dtype.kind not in "ui":
        raise DataFileError(path, f"{key} must be integer class labels, shape (N,); got shape "
                                  f"{y.shape}, dtype {y.dtype}")
    if y.shape[0] != n:
        raise DataFileError(path, f"{key} has {y.shape[0]} labels for the {n} images of "
                                  f"{x_key}")
    return y.astype(np.int64)


def load_npz(path, size="full", dtype=np.float32, normalize=True):
    """Load an image classification set saved as NumPy arrays in one ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npz`` with ``x`` (N, H, W) or (N, C, H, W), ``y`` (N,) integer labels, and
        optionally ``x_test``, ``y_test`` of the same layout (see the module docstring).
    size : {"full", "small"} or (int, int)
        As :func:`load_cifar10`; only ``"full"`` for a file without a test split.
    dtype : {numpy.float32, numpy.float64}
    normalize : bool or Normalization
        True: subtract the training images' mean and divide by their standard deviation (one
        pair over all values); a saved :class:`~fastconv.datasets.Normalization` is applied
        as is; False keeps the values.

    Returns
    -------
    Dataset
        ``name`` ``"npz"``; ``n_classes`` = the largest training label + 1; the test split
        is empty (N = 0) when the file has none.

    Raises
    ------
    DataFileError
        The file is missing, not an .npz, truncated, corrupt, too large, or its arrays have
        the wrong dtype, shape or counts (the message names the array).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    >>> np.savez("tiny.npz", x=x, y=np.arange(20) % 2)      # doctest: +SKIP
    >>> load_npz("tiny.npz").input_shape                    # doctest: +SKIP
    (1, 8, 8)
    """
    from .mnist import _check_normalize, _resolve_size

    dtype = check_dtype(dtype, "load_npz")
    _check_normalize(normalize, "load_npz")
    path = os.fspath(path)
    arrays = _read_npz(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataFileError(path, f"has no {key!r} array; an .npz data set holds x "
                                      f"(images) and y (labels), optionally x_test and y_test")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataFileError(path, "has only one of x_test and y_test; give both or neither")
    x = _check_images(path, "x", arrays["x"])
    y = _check_labels(path, "y", arrays["y"], x.shape[0], "x")
    if "x_test" in arrays:
        x_test = _check_images(path, "x_test", arrays["x_test"])
        if x_test.shape[1:] != x.shape[1:]:
            raise DataFileError(path, f"x_test images are {x_test.shape[1:]}, x images "
                                      f"{x.shape[1:]}; both splits must have one shape")
        if x_test.dtype != x.dtype:
            raise DataFileError(path, f"x_test has dtype {x_test.dtype}, x {x.dtype}; both "
                                      f"splits must have one dtype")
        y_test = _check_labels(path, "y_test", arrays["y_test"], x_test.shape[0], "x_test")
    else:
        x_test, y_test = x[:0], y[:0]
    if x.shape[0] == 0:
        raise DataFileError(path, "x holds no images (N = 0)")
    # Classes are counted on the whole file: a model trained on the first samples of a set
    # must still fit the set.
    n_classes = count_classes(y, y_test, path, path)
    if x_test.shape[0]:
        n_train, n_test = _resolve_size(size, x.shape[0], x_test.shape[0], "load_npz")
    elif size == "full":
        n_train, n_test = x.shape[0], 0
    else:
        raise ValueError(f"load_npz: size {size!r} needs a test split; {path} has none "
                         f"(x_test, y_test): use size='full'")
    x, y, x_test, y_test = x[:n_train], y[:n_train], x_test[:n_test], y_test[:n_test]
    log.info("loaded %s: %d train, %d test samples", path, n_train, n_test)
    return finish_arrays(x, y, x_test, y_test, dtype, normalize, {"npz": path}, "npz",
                         n_classes, path)


def _fit(x):
    """Mean and standard deviation (n - 1) of every value of ``x``, in float64 without a
    float copy of the whole array."""
    from .mnist import Normalization

    n = x.size
    if n < 2:
        raise ValueError("cannot fit a normalization on fewer than 2 values")
    if x.dtype == np.uint8:
        counts = np.bincount(x.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256, dtype=np.float64)
        mean = (counts @ values) / n
        var = (counts @ (values - mean) ** 2) / (n - 1)
    else:
        blocks = range(0, x.shape[0], _BLOCK)
        mean = sum(float(x[i:i + _BLOCK].sum(dtype=np.float64)) for i in blocks) / n
        var = sum(float(((x[i:i + _BLOCK].astype(np.float64) - mean) ** 2).sum())
                  for i in blocks) / (n - 1)
    if not var > 0:
        raise ValueError(f"every training value is {mean:g}: nothing to learn from, and no "
                         f"standard deviation to normalize by")
    return Normalization(mean, np.sqrt(var))


def _to_float(x, dtype, norm):
    """``(x - mean) / std`` (or ``x`` without ``norm``) as C-contiguous ``dtype``, computed in
    float64 block by block so that float32 results are rounded once."""
    out = np.empty(x.shape, dtype=dtype)
    for i in range(0, x.shape[0], _BLOCK):
        block = x[i:i + _BLOCK].astype(np.float64)
        if norm is not None:
            block = (block - norm.mean) / norm.std
        out[i:i + _BLOCK] = block
    return out


def finish_arrays(train_images, train_y, test_images, test_y, dtype, normalize, files, name,
                  n_classes, train_path):
    """A :class:`Dataset` of checked images (N, C, H, W) and labels: the normalization fitted
    on the training images (or the given one) and applied to both splits."""
    if normalize is True:
        try:
            norm = _fit(train_images)
        except ValueError as exc:
            raise DataFileError(train_path, str(exc)) from None
    else:
        norm = normalize or None
    return Dataset(train_x=_to_float(train_images, dtype, norm), train_y=train_y,
                   test_x=_to_float(test_images, dtype, norm), test_y=test_y,
                   normalization=norm, files=files, name=name, n_classes=n_classes)
