"""Data sets for fastconv: MNIST as the reference homework prepared it.

:func:`load_mnist` finds, verifies, pads and normalizes the four standard MNIST files;
:func:`load_mnist_sample` loads the 1,000/200-image real-MNIST sample shipped with the package;
:func:`read_idx` and :func:`write_idx` handle the IDX format itself.
"""
from ._idx import DataFileError, read_idx, write_idx
from .mnist import (FILES, MIRRORS, MNIST, SHA256, DataNotFoundError, Normalization,
                    SAMPLE_FOLDER, cache_dir, load_mnist, load_mnist_sample)

__all__ = [
    "load_mnist", "load_mnist_sample", "SAMPLE_FOLDER", "MNIST", "Normalization", "read_idx", "write_idx", "DataFileError",
    "DataNotFoundError", "MIRRORS", "SHA256", "FILES", "cache_dir",
]
