"""Small generated data sets in each format fastconv reads, for the data set tests.

Each writer makes a valid set that trains in well under a second; the tests break copies of
them to check the readers' errors.
"""
import numpy as np

from fastconv.datasets import FILES, write_idx

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILES
RECORD = 1 + 3 * 32 * 32


def idx_arrays(rng, n_train=60, n_test=20, side=28, n_classes=10):
    """Fashion-MNIST-style uint8 images (N, side, side) whose mean brightness follows the
    class, and their labels, for both splits."""
    def split(n):
        y = (np.arange(n) % n_classes).astype(np.uint8)
        x = rng.integers(0, 64, (n, side, side)) + (y[:, None, None].astype(np.int64) * 19)
        return x.clip(0, 255).astype(np.uint8), y
    return split(n_train) + split(n_test)


def write_idx_folder(folder, rng, compress=True, **kwargs):
    """A Fashion-MNIST-style IDX folder (the four files, ``.gz`` unless ``compress=False``)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = idx_arrays(rng, **kwargs)
    for name, array in zip(FILES, arrays):
        write_idx(folder / (name if compress else name[:-3]), array)
    return folder


def cifar_records(rng, n, label_offset=0):
    labels = (np.arange(n) + label_offset) % 10
    pixels = rng.integers(0, 256, (n, 3072))
    return np.concatenate([labels[:, None], pixels], axis=1).astype(np.uint8).tobytes()


def write_cifar_folder(folder, rng, per_batch=8, n_test=10):
    """A CIFAR-10-binary-style folder: data_batch_1..5.bin and test_batch.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records(rng, per_batch, i))
    (folder / "test_batch.bin").write_bytes(cifar_records(rng, n_test))
    return folder


def write_npz(path, rng, n_train=36, n_test=9, shape=(2, 10, 10), n_classes=3):
    """An .npz of float32 images (N, 2, 10, 10) in 3 classes, with a test split."""
    def split(n):
        y = np.arange(n) % n_classes
        x = rng.standard_normal((n,) + shape).astype(np.float32) + y[:, None, None, None]
        return x, y
    x, y = split(n_train)
    x_test, y_test = split(n_test)
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return path
