"""Data sets for fastconv: MNIST as the reference homework prepared it.

:func:`load_mnist` finds, verifies, pads and normalizes the four standard MNIST files;
:func:`read_idx` and :func:`write_idx` handle the IDX format itself.
"""
from ._idx import DataFileError, read_idx, write_idx
from .mnist import (FILES, MIRRORS, MNIST, SHA256, DataNotFoundError, Normalization,
                    cache_dir, load_mnist)

__all__ = [
    "load_mnist", "MNIST", "Normalization", "read_idx", "write_idx", "DataFileError",
    "DataNotFoundError", "MIRRORS", "SHA256", "FILES", "cache_dir",
]
