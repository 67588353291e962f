"""One entry point for every data set: :func:`load_dataset` by name or kind."""
from .arrays import load_npz
from .cifar import load_cifar10
from .mnist import NAMED_SETS, load_idx_folder, load_named

__all__ = ["DATASETS", "load_dataset"]

# Names of the sets fastconv can download, then the kinds read from a path the user gives.
DATASETS = tuple(NAMED_SETS) + ("idx", "cifar", "npz")
# What --data (the ``data`` argument) names for each kind, for messages.
DATA_DESCRIPTION = {
    "mnist": "a folder holding the four MNIST .gz files",
    "fashion-mnist": "a folder holding the four Fashion-MNIST .gz files as published",
    "kmnist": "a folder holding the four Kuzushiji-MNIST .gz files as published",
    "idx": "a folder of IDX files in the MNIST layout (train-images-idx3-ubyte, "
           "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
           "each .gz or not)",
    "cifar": "a folder of CIFAR-10 binary batches (data_batch_1.bin ... data_batch_5.bin, "
             "test_batch.bin)",
    "npz": "an .npz file with arrays x, y (and optionally x_test, y_test)",
}


def load_dataset(name, data=None, *, size="full", dtype="float32", normalize=True,
                 local_contrast=False, mirrors=None, offline=None):
    """Load a data set by name (``mnist``, ``fashion-mnist``, ``kmnist``) or by kind of file
    (``idx``, ``cifar``, ``npz``).

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data : str or os.PathLike, optional
        For a named set, a folder to look in first (else the cache, then a download); for
        ``idx`` and ``cifar``, the folder; for ``npz``, the file. Required for the kinds.
    size : {"full", "small"} or (int, int)
        Every sample, the first 6,000 / 1,000, or the first ``(n_train, n_test)``.
    dtype : {numpy.float32, numpy.float64}
    normalize : bool or Normalization
        True fits mean and std on the training split; a saved
        :class:`~fastconv.datasets.Normalization` is applied unchanged; False keeps raw
        values.
    local_contrast : bool
        Local contrast normalization (MNIST-layout sets only).
    mirrors, offline
        Download settings of the named sets (see :func:`load_named`).

    Returns
    -------
    Dataset
        ``train_x``, ``test_x`` (N, C, H, W); ``train_y``, ``test_y`` int64;
        ``n_classes``, ``input_shape`` and ``normalization`` from the data.

    Raises
    ------
    ValueError
        Unknown ``name``, or a kind without ``data``, or ``local_contrast`` for a kind that
        does not support it.
    DataFileError, DataNotFoundError
        As the loader of that kind.

    Examples
    --------
    >>> data = load_dataset("cifar", "cifar-10-batches-bin", size="small")  # doctest: +SKIP
    >>> data.input_shape, data.n_classes                                     # doctest: +SKIP
    ((3, 32, 32), 10)
    """
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown data set {name!r}; choose from "
                         f"{', '.join(DATASETS)}")
    if name in NAMED_SETS:
        return load_named(name, data, size=size, dtype=dtype, normalize=normalize,
                          local_contrast=local_contrast, mirrors=mirrors, offline=offline)
    if data is None:
        raise ValueError(f"load_dataset: {name!r} needs data: {DATA_DESCRIPTION[name]}")
    if name == "idx":
        return load_idx_folder(data, size=size, dtype=dtype, normalize=normalize,
                               local_contrast=local_contrast)
    if local_contrast:
        raise ValueError(f"load_dataset: local_contrast applies to the MNIST-layout sets, "
                         f"not {name!r}")
    if name == "cifar":
        return load_cifar10(data, size=size, dtype=dtype, normalize=normalize)
    return load_npz(data, size=size, dtype=dtype, normalize=normalize)
