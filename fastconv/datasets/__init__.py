"""Data sets for fastconv: MNIST as the reference homework prepared it, and any small image set.

:func:`load_dataset` loads any of them by name or kind: the named sets in the MNIST layout
(:func:`load_mnist`, :func:`load_named`: MNIST, Fashion-MNIST, Kuzushiji-MNIST, downloaded and
checked against pinned sha256), any folder of IDX files in that layout
(:func:`load_idx_folder`), CIFAR-10 binary batches (:func:`load_cifar10`) and arrays in an
``.npz`` (:func:`load_npz`). Each returns a :class:`Dataset` whose number of classes and
input shape come from the data. :func:`load_mnist_sample` loads the 1,000/200-image
real-MNIST sample shipped with the package; :func:`read_idx` and :func:`write_idx` handle the
IDX format itself.
"""
from ._dataset import MAX_CLASSES, Dataset
from ._idx import DataFileError, read_idx, write_idx
from .arrays import NPZ_KEYS, load_npz
from .catalog import DATASETS, load_dataset
from .cifar import CIFAR10_CLASSES, load_cifar10
from .mnist import (FILES, MIRRORS, MNIST, NAMED_SETS, SHA256, DataNotFoundError, NamedSet,
                    Normalization, SAMPLE_FOLDER, cache_dir, load_idx_folder, load_mnist,
                    load_mnist_sample, load_named)

__all__ = [
    "load_dataset", "DATASETS", "Dataset", "load_mnist", "load_mnist_sample", "load_named",
    "load_idx_folder", "load_cifar10", "load_npz", "NAMED_SETS", "NamedSet", "NPZ_KEYS",
    "CIFAR10_CLASSES", "MAX_CLASSES", "SAMPLE_FOLDER", "MNIST", "Normalization", "read_idx",
    "write_idx", "DataFileError", "DataNotFoundError", "MIRRORS", "SHA256", "FILES",
    "cache_dir",
]
