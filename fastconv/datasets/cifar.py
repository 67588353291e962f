"""CIFAR-10 in its binary format: 32x32 colour images in 10 classes.

The binary distribution (``cifar-10-binary.tar.gz``, unpacked to ``cifar-10-batches-bin/``)
holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` (training) and ``test_batch.bin``. Each
file is a sequence of 3,073-byte records: one label byte (0-9), then 3,072 pixel bytes, the
1,024 red values of the 32x32 image row by row, then the green, then the blue. That is
already NCHW: a record's pixels reshape to (3, 32, 32) without a transpose.

Each file's size is checked before it is read (a whole number of records, at most
:data:`MAX_BATCH_BYTES`), every label is checked, and any problem raises
:class:`~fastconv.datasets.DataFileError` naming the file.
"""
import logging
import os
from pathlib import Path

import numpy as np

from .._validation import check_dtype
from ._dataset import Dataset, count_classes
from ._idx import DataFileError

__all__ = ["load_cifar10", "CIFAR10_TRAIN_FILES", "CIFAR10_TEST_FILE", "CIFAR10_CLASSES"]

log = logging.getLogger("fastconv.datasets")

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
_SHAPE = (3, 32, 32)
_RECORD = 1 + 3 * 32 * 32
# A batch of the real set is 10,000 records (30.7 MB); a file larger than this is refused
# before anything is read, whatever it claims to be.
MAX_BATCH_BYTES = 1 << 30


def _batch_folder(folder):
    """``folder`` itself, or its ``cifar-10-batches-bin`` subfolder (the tarball's layout)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(folder, "no such folder")
    inner = folder / "cifar-10-batches-bin"
    if not (folder / CIFAR10_TEST_FILE).exists() and inner.is_dir():
        return inner
    return folder


def _read_batch(path):
    """(images uint8 (N, 3, 32, 32), labels uint8 (N,)) of one batch file."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise DataFileError(path, "no such file; a CIFAR-10 folder holds "
                                  f"{', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}") \
            from None
    if not os.path.isfile(path):
        raise DataFileError(path, "is not a regular file")
    if size > MAX_BATCH_BYTES:
        raise DataFileError(path, f"{size} bytes, more than the {MAX_BATCH_BYTES}-byte limit "
                                  f"of a CIFAR-10 batch file")
    if size == 0:
        raise DataFileError(path, "is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(2)
        if head == b"\x1f\x8b":
            raise DataFileError(path, "is gzip-compressed; CIFAR-10 batch files are raw "
                                      "records (unpack cifar-10-binary.tar.gz with tar -xzf)")
        f.seek(0)
        data = f.read(size + 1)
    if len(data) != size:
        raise DataFileError(path, f"changed while being read ({len(data)} bytes, {size} "
                                  f"expected)")
    if size % _RECORD:
        raise DataFileError(path, f"truncated or not CIFAR-10 binary: {size} bytes is not a "
                                  f"whole number of {_RECORD}-byte records (1 label byte + "
                                  f"3,072 pixel bytes); the last record has "
                                  f"{size % _RECORD} bytes")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise DataFileError(path, f"record {i} has label {labels[i]}; CIFAR-10 labels are "
                                  f"0-9 (is this the CIFAR-100 format, 2 label bytes?)")
    return records[:, 1:].reshape((-1,) + _SHAPE), labels


def load_cifar10(folder, size="full", dtype=np.float32, normalize=True):
    """Load a folder of CIFAR-10 binary batches: 3x32x32 colour images, 10 classes.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder holding ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``
        (or holding ``cifar-10-batches-bin/`` with them). Batches may have any number of
        records; a cut-down copy works the same.
    size : {"full", "small"} or (int, int)
        ``"full"``: every image; ``"small"``: the first 6,000 / 1,000; a pair takes the
        first ``n_train`` / ``n_test``.
    dtype : {numpy.float32, numpy.float64}
    normalize : bool or Normalization
        True: subtract the training split's mean and divide by its standard deviation (one
        pair over all pixels and channels); a :class:`~fastconv.datasets.Normalization`
        applies saved statistics; False keeps the 0-255 values.

    Returns
    -------
    Dataset
        ``train_x`` (N, 3, 32, 32), ``n_classes`` 10, ``name`` ``"cifar"``.

    Raises
    ------
    DataFileError
        A file is missing, empty, truncated, too large or has a label outside 0-9.

    Examples
    --------
    >>> data = load_cifar10("cifar-10-batches-bin")       # doctest: +SKIP
    >>> data.train_x.shape, data.n_classes                 # doctest: +SKIP
    ((50000, 3, 32, 32), 10)
    """
    from .mnist import _check_normalize, _resolve_size
    from .arrays import finish_arrays

    dtype = check_dtype(dtype, "load_cifar10")
    _check_normalize(normalize, "load_cifar10")
    folder = _batch_folder(folder)
    parts = [_read_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = _read_batch(folder / CIFAR10_TEST_FILE)
    n_train, n_test = _resolve_size(size, len(train_images), len(test_images), "load_cifar10")
    train_y = train_labels[:n_train].astype(np.int64)
    test_y = test_labels[:n_test].astype(np.int64)
    files = {name: str(folder / name) for name in CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)}
    count_classes(train_y, test_y, files[CIFAR10_TRAIN_FILES[0]], files[CIFAR10_TEST_FILE], 10)
    log.info("loaded CIFAR-10: %d train, %d test images", n_train, n_test)
    return finish_arrays(train_images[:n_train], train_y, test_images[:n_test], test_y,
                         dtype, normalize, files, "cifar", 10, files[CIFAR10_TRAIN_FILES[0]])
