"""What every loader returns, and the checks every loader shares.

A :class:`Dataset` holds float images (N, C, H, W) and integer labels for a training and a
test split; its number of classes and its input shape come from the data, and the model
builders (:func:`fastconv.nn.build_model`) are sized to them. The helpers here are the one
place where labels are checked, classes counted and a training split's normalization fitted.
"""
import dataclasses

import numpy as np

from ._idx import DataFileError

__all__ = ["Dataset", "MAX_CLASSES", "count_classes"]

# More classes than this is taken for a mistake (labels that are ids or values, not classes):
# the model's last layer would grow with the largest label.
MAX_CLASSES = 10000


@dataclasses.dataclass(repr=False)
class Dataset:
    """A loaded data set: a training and a test split, normalized.

    Attributes
    ----------
    train_x, test_x : numpy.ndarray
        Images, shape (N, C, H, W), C-contiguous, the requested float dtype. ``test_x`` has
        N = 0 for an ``.npz`` without a test split.
    train_y, test_y : numpy.ndarray
        Labels 0 .. ``n_classes`` - 1, shape (N,), int64.
    normalization : Normalization or None
        Statistics fitted on the training split and applied to both; None when the data set
        was loaded with ``normalize=False``.
    files : dict
        File name -> path it was read from.
    name : str
        The data set kind or name it was loaded as (``"mnist"``, ``"cifar"``, ``"npz"``, ...).
    n_classes : int
        Number of classes: 10 for the named sets and CIFAR-10, else the largest label of
        the whole training file + 1 (whatever ``size`` selects).
    padding : int
        Zero pixels added on each side before normalization (2 for IDX images, as MNIST's
        28x28 become 32x32; 0 otherwise). Predictions on new images must pad the same.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    normalization: object = None
    files: dict = dataclasses.field(default_factory=dict)
    name: str = "mnist"
    n_classes: int = 10
    padding: int = 0

    @property
    def input_shape(self):
        """Shape of one sample, ``(C, H, W)``: what :func:`fastconv.nn.build_model` takes."""
        return tuple(int(s) for s in self.train_x.shape[1:])

    def metadata(self):
        """What a model trained on this data set keeps (JSON-able): the data set's kind,
        input shape, classes and padding, and the normalization."""
        return {"dataset": {"name": self.name, "input_shape": list(self.input_shape),
                            "n_classes": int(self.n_classes), "padding": int(self.padding)},
                "normalization": self.normalization.to_dict() if self.normalization else None}

    def __repr__(self):
        return (f"{type(self).__name__}(train_x={self.train_x.shape} {self.train_x.dtype}, "
                f"test_x={self.test_x.shape} {self.test_x.dtype}, "
                f"n_classes={self.n_classes}, normalization={self.normalization})")


def count_classes(train_labels, test_labels, train_path, test_path, n_classes=None):
    """Check two label arrays and return the number of classes.

    Labels must be non-negative integers; without a fixed ``n_classes`` it is the largest
    training label + 1 (at least 2, at most :data:`MAX_CLASSES`), and a test label must be
    one of the training classes.

    Raises
    ------
    DataFileError
        Naming the file whose labels are wrong.
    """
    for labels, path in ((train_labels, train_path), (test_labels, test_path)):
        if labels.size and int(labels.min()) < 0:
            raise DataFileError(path, f"labels must be 0 or more; found {int(labels.min())}")
    if train_labels.size == 0:
        raise DataFileError(train_path, "the training split is empty (0 samples)")
    top = int(train_labels.max())
    if n_classes is None:
        if top + 1 > MAX_CLASSES:
            raise DataFileError(train_path, f"labels must be classes 0 .. K-1 with K <= "
                                            f"{MAX_CLASSES}; found label {top}")
        n_classes = top + 1
        if n_classes < 2:
            raise DataFileError(train_path, "every training label is 0: a classifier needs "
                                            "at least 2 classes")
    elif top >= n_classes:
        raise DataFileError(train_path, f"labels must be 0-{n_classes - 1}; found {top}")
    if test_labels.size and int(test_labels.max()) >= n_classes:
        raise DataFileError(test_path, f"test label {int(test_labels.max())} is not a class "
                                       f"of the training split (0-{n_classes - 1})")
    return n_classes
