"""MNIST as the reference homework uses it: 32x32, globally (and optionally locally) normalized.

Where the four files are looked for, in order (per file):

1. the ``folder`` argument;
2. the folder named by the ``FASTCONV_DATA`` environment variable;
3. the user cache, ``$XDG_CACHE_HOME/fastconv/mnist`` (default ``~/.cache/fastconv/mnist``);
4. a download into that cache from :data:`MIRRORS`, tried in turn, unless offline
   (``offline=True`` or ``FASTCONV_OFFLINE=1``, in which case no socket is opened).

Every file, wherever it comes from, is decompressed, its IDX header checked (magic number,
28x28 images, length) and the sha256 of the uncompressed bytes compared with the canonical
value. A file that fails raises :class:`DataFileError` naming it; a download that fails any of
this moves on to the next mirror and is never written into the cache.
"""
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from .._validation import check_dtype
from ._download import fetch_verified
from ._idx import DataFileError, parse_idx, read_bytes

__all__ = [
    "MIRRORS", "SHA256", "FILES", "MNIST", "Normalization", "DataNotFoundError",
    "load_mnist", "load_mnist_sample", "SAMPLE_FOLDER", "cache_dir",
]

log = logging.getLogger("fastconv.datasets")

# The original site (yann.lecun.com/exdb/mnist) no longer serves the files; these do.
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
# For the "put the files here" hint, even when tests or users empty MIRRORS.
_HINT_MIRROR = MIRRORS[0]

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# sha256 of each *uncompressed* file: gzip output differs between compressors and mirrors,
# the IDX bytes inside do not.
SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_MAGIC = {TRAIN_IMAGES: 0x803, TRAIN_LABELS: 0x801, TEST_IMAGES: 0x803, TEST_LABELS: 0x801}
_SIZES = {"full": (60000, 10000), "small": (6000, 1000)}
# The first 1,000 training and 200 test images of MNIST, shipped inside the package so that
# examples, tests and Dask workers without the data set still have real digits to work on.
SAMPLE_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_sample")
_PAD = 2
_SIDE = 28 + 2 * _PAD
# Images per call of the local-normalization kernel: bounds its temporaries, not the result.
_LCN_BLOCK = 4096
LOCAL_CONTRAST_THRESHOLD = 1.0


class DataNotFoundError(FileNotFoundError):
    """No source had a valid copy of an MNIST file; the message lists every place tried."""


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Global pixel normalization ``x -> (x - mean) / std``, kept with a trained model.

    The statistics come from the training set (after padding to 32x32) and are reused,
    unchanged, for the test set and for any later prediction: save ``to_dict()`` with the
    model and rebuild with :meth:`from_dict`.

    Parameters
    ----------
    mean, std : float
        Pixel mean and standard deviation on the 0-255 scale; ``std > 0``.
    """

    mean: float
    std: float

    def __post_init__(self):
        mean, std = float(self.mean), float(self.std)
        if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
            raise ValueError(f"Normalization: need finite mean and std > 0; "
                             f"got mean={self.mean!r}, std={self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def to_dict(self):
        """Return ``{"mean": float, "std": float}`` (JSON-serialisable)."""
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on missing or extra keys."""
        if set(d) != {"mean", "std"}:
            raise ValueError(f"Normalization.from_dict: need exactly the keys 'mean' and "
                             f"'std'; got {sorted(d)}")
        return cls(d["mean"], d["std"])

    def apply(self, x, dtype=None):
        """Return ``(x - mean) / std`` as a new array of ``dtype`` (default ``x.dtype``,
        float64 for integer input)."""
        x = np.asarray(x)
        if dtype is None:
            dtype = x.dtype if x.dtype.kind == "f" else np.float64
        return ((x - self.mean) / self.std).astype(dtype, copy=False)


@dataclasses.dataclass
class MNIST:
    """The loaded data set.

    Attributes
    ----------
    train_x, test_x : numpy.ndarray
        Images, shape (N, 1, 32, 32), C-contiguous, the requested float dtype.
    train_y, test_y : numpy.ndarray
        Labels 0-9, shape (N,), int64.
    normalization : Normalization or None
        Statistics applied to both sets; None when ``normalize=False`` (pixels then 0-255).
    files : dict
        File name -> path it was read from.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    normalization: Normalization = None
    files: dict = dataclasses.field(default_factory=dict)

    def __repr__(self):
        return (f"MNIST(train_x={self.train_x.shape} {self.train_x.dtype}, "
                f"test_x={self.test_x.shape} {self.test_x.dtype}, "
                f"normalization={self.normalization})")


def cache_dir():
    """Return the download cache: ``$XDG_CACHE_HOME/fastconv/mnist`` or
    ``~/.cache/fastconv/mnist``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base-directory spec requires.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastconv" / "mnist"


def _offline_from_env():
    return os.environ.get("FASTCONV_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _check_file(path, name, expected_sha256):
    """Read ``path`` as MNIST file ``name``; return its array or raise DataFileError."""
    raw = read_bytes(path, gz=name.endswith(".gz"))
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[name]:
        kind = "uint8 images, 3-D" if _MAGIC[name] == 0x803 else "uint8 labels, 1-D"
        raise DataFileError(path, f"wrong magic number for {name}: expected "
                                  f"0x{_MAGIC[name]:08X} ({kind}), got 0x{magic:08X}")
    array = parse_idx(raw, os.fspath(path))
    if array.ndim == 3 and array.shape[1:] != (28, 28):
        raise DataFileError(path, f"wrong dimensions for {name}: expected (N, 28, 28), "
                                  f"got {array.shape}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256[name]:
        raise DataFileError(path, f"sha256 mismatch for {name} (uncompressed): expected "
                                  f"{expected_sha256[name]}, got {digest}; the file is "
                                  f"damaged or not the canonical MNIST file")
    if array.ndim == 1 and array.size and array.max() > 9:
        raise DataFileError(path, f"labels must be 0-9; found {array.max()}")
    return array


def _places(folder):
    """(description, folder or None, reason when None) for each local place, in order."""
    places = []
    if folder is None:
        places.append(("folder argument", None, "not given"))
    else:
        places.append((f"folder argument {folder}", Path(folder), None))
    env = os.environ.get("FASTCONV_DATA")
    if env:
        places.append((f"FASTCONV_DATA={env}", Path(env), None))
    else:
        places.append(("FASTCONV_DATA", None, "not set"))
    places.append((f"cache {cache_dir()}", cache_dir(), None))
    return places


def _gather(folder, expected_sha256, mirrors, offline):
    """Return {name: (array, path)} for the four files, or raise DataNotFoundError."""
    places = _places(folder)
    found, tried = {}, {}
    for name in FILES:
        tried[name] = []
        for where, place, reason in places:
            if place is None:
                tried[name].append((where, reason))
            elif not place.is_dir():
                tried[name].append((where, "no such folder"))
            elif not (place / name).is_file():
                tried[name].append((where, "no such file"))
            else:
                # A bad local file is an error, not a reason to look elsewhere: silently
                # preferring another copy would hide a broken data folder.
                found[name] = (_check_file(place / name, name, expected_sha256), place / name)
                break

    missing = [name for name in FILES if name not in found]
    for name in missing:
        if offline:
            tried[name].append(("download", "skipped: offline (FASTCONV_OFFLINE=1 or "
                                            "offline=True)"))
            continue
        if not mirrors:
            tried[name].append(("download", "no mirrors given"))
            continue
        try:
            array, attempts, ok = fetch_verified(
                name, cache_dir(), mirrors,
                lambda path, name=name: _check_file(path, name, expected_sha256))
        except OSError as exc:
            attempts, ok = [(f"cache {cache_dir()}", f"cannot write: {exc}")], False
        tried[name].extend(attempts)
        if not ok:
            # Later files would only fail the same way, each after its own timeouts.
            break
        found[name] = (array, cache_dir() / name)

    missing = [name for name in FILES if name not in found]
    if missing:
        lines = [f"cannot load MNIST: no valid copy of {', '.join(missing)}."]
        for name in missing:
            lines.append(f"  {name}:")
            lines.extend(f"    {where}: {reason}" for where, reason in tried[name])
        lines.append(f"Put the four files {', '.join(FILES)} (from any MNIST mirror, e.g. "
                     f"{_HINT_MIRROR}) in {cache_dir()}, or pass folder= or set FASTCONV_DATA "
                     f"to the folder holding them.")
        raise DataNotFoundError("\n".join(lines))
    return found


def _resolve_size(size, n_train, n_test):
    if isinstance(size, str):
        if size not in _SIZES:
            raise ValueError(f"load_mnist: size must be 'full', 'small' or (n_train, n_test); "
                             f"got {size!r}")
        want = _SIZES[size] if size == "small" else (n_train, n_test)
    else:
        try:
            want = tuple(int(s) for s in size)
        except TypeError:
            raise ValueError(f"load_mnist: size must be 'full', 'small' or (n_train, n_test); "
                             f"got {size!r}") from None
        if len(want) != 2 or min(want) < 1:
            raise ValueError(f"load_mnist: size (n_train, n_test) must be two positive "
                             f"integers; got {size!r}")
    if want[0] > n_train or want[1] > n_test:
        raise ValueError(f"load_mnist: size {size!r} asks for {want[0]} train / {want[1]} test "
                         f"images; the files hold {n_train} / {n_test}")
    return want


def _fit_normalization(images):
    """Mean and std of ``images`` (uint8, N x 28 x 28) after zero padding to 32x32.

    Works on a 256-bin histogram: exact, and no float copy of 47 M pixels. The std uses
    n - 1 in the denominator, like Torch's ``std()`` that the homework called.
    """
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    counts[0] += images.shape[0] * (_SIDE * _SIDE - 28 * 28)
    values = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = (counts @ values) / n
    var = (counts @ (values - mean) ** 2) / (n - 1)
    return Normalization(mean, np.sqrt(var))


def _to_float(images, dtype, norm):
    """Pad uint8 (N, 28, 28) images to float (N, 1, 32, 32), normalizing if ``norm``.

    A 256-entry lookup table computed in float64 maps each pixel value to its final number,
    so float32 output is rounded once and costs no float64 temporary of the whole set.
    """
    table = np.arange(256, dtype=np.float64)
    if norm is not None:
        table = (table - norm.mean) / norm.std
    table = table.astype(dtype)
    out = np.full((images.shape[0], 1, _SIDE, _SIDE), table[0], dtype=dtype)
    out[:, 0, _PAD:_PAD + 28, _PAD:_PAD + 28] = table[images]
    return out


def _local_contrast(x):
    """Spatial contrastive normalization (7-tap Gaussian) of every image, in blocks.

    The divisive threshold is 1, as in the Torch7 tutorial's data preparation
    (``nn.SpatialContrastiveNormalization(1, gaussian1D(7), 1)``): on globally normalized
    images it keeps flat regions (local std below one global std) from being amplified.
    """
    from ..functional import (gaussian_kernel_1d,
                              spatial_contrastive_normalization_forward)
    kernel = gaussian_kernel_1d(7, dtype=x.dtype)
    out = np.empty_like(x)
    for start in range(0, x.shape[0], _LCN_BLOCK):
        block = slice(start, start + _LCN_BLOCK)
        spatial_contrastive_normalization_forward(x[block], kernel, LOCAL_CONTRAST_THRESHOLD,
                                                  out=out[block])
    return out


def load_mnist(folder=None, size="full", dtype=np.float32, normalize=True,
               local_contrast=False, mirrors=None, offline=None, expected_sha256=None):
    """Load MNIST as 32x32 float images, ready for the homework's models.

    Parameters
    ----------
    folder : str or os.PathLike, optional
        Folder holding the four ``.gz`` files; searched first (see the module docstring for
        the full search order: folder, ``FASTCONV_DATA``, cache, download).
    size : {"full", "small"} or (int, int)
        ``"full"``: every image in the files (60,000 train / 10,000 test for MNIST);
        ``"small"``: the first 6,000 / 1,000; a pair takes the first ``n_train`` / ``n_test``.
    dtype : {numpy.float32, numpy.float64}
        Dtype of the images.
    normalize : bool or Normalization
        True: subtract the training set's mean and divide by its std (computed on the selected
        training images, padding included), for both sets. A :class:`Normalization` applies
        saved statistics instead. False: raw pixel values 0-255.
    local_contrast : bool
        Afterwards apply spatial contrastive normalization with a 7-tap Gaussian
        (:func:`fastconv.functional.spatial_contrastive_normalization_forward`).
    mirrors : sequence of str, optional
        Base URLs to download from, tried in turn; default :data:`MIRRORS`.
    offline : bool, optional
        Never download; default from ``FASTCONV_OFFLINE=1``.
    expected_sha256 : dict, optional
        File name -> sha256 of the uncompressed file, for all four files; default
        :data:`SHA256`, the canonical MNIST values. Override only for cut-down test data.

    Returns
    -------
    MNIST
        ``train_x``, ``test_x`` of shape (N, 1, 32, 32) and ``dtype``; ``train_y``,
        ``test_y`` of shape (N,), int64; ``normalization``; ``files``.

    Shape:
        28x28 digits are zero-padded by 2 pixels on each side: H = W = 28 + 2 * 2 = 32.
        The padding is 0 before normalization, so ``-mean / std`` after it.

    Raises
    ------
    DataFileError
        A file found or downloaded is truncated, corrupt, has the wrong magic number or
        dimensions, or the wrong sha256 (message names the file).
    DataNotFoundError
        No source has the files; the message lists each place and URL tried with its reason.
    TypeError, ValueError
        Bad ``dtype``, ``normalize``, ``size`` or ``expected_sha256``, or ``size`` asks for
        more images than the files hold.

    Examples
    --------
    >>> data = load_mnist(size="small")                          # doctest: +SKIP
    >>> data.train_x.shape, data.train_y.shape                   # doctest: +SKIP
    ((6000, 1, 32, 32), (6000,))
    >>> saved = data.normalization.to_dict()                     # doctest: +SKIP
    >>> test = load_mnist(normalize=Normalization.from_dict(saved))  # doctest: +SKIP
    """
    dtype = check_dtype(dtype, "load_mnist")
    if not isinstance(normalize, (bool, Normalization)):
        raise TypeError(f"load_mnist: normalize must be a bool or a Normalization; "
                        f"got {type(normalize).__name__}")
    if expected_sha256 is None:
        expected_sha256 = SHA256
    elif set(expected_sha256) != set(FILES):
        raise ValueError(f"load_mnist: expected_sha256 must give exactly the four files "
                         f"{list(FILES)}; got {sorted(expected_sha256)}")
    if mirrors is None:
        mirrors = MIRRORS
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    if offline is None:
        offline = _offline_from_env()

    found = _gather(folder, expected_sha256, list(mirrors), offline)
    arrays = {name: found[name][0] for name in FILES}
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if len(arrays[images]) != len(arrays[labels]):
            raise DataFileError(found[labels][1], f"{len(arrays[labels])} labels for "
                                f"{len(arrays[images])} images in {found[images][1]}")
    n_train, n_test = _resolve_size(size, len(arrays[TRAIN_IMAGES]), len(arrays[TEST_IMAGES]))

    train_images = arrays[TRAIN_IMAGES][:n_train]
    test_images = arrays[TEST_IMAGES][:n_test]
    if normalize is True:
        norm = _fit_normalization(train_images)
    else:
        norm = normalize or None
    train_x = _to_float(train_images, dtype, norm)
    test_x = _to_float(test_images, dtype, norm)
    if local_contrast:
        train_x = _local_contrast(train_x)
        test_x = _local_contrast(test_x)
    log.info("loaded MNIST: %d train, %d test images", n_train, n_test)
    return MNIST(
        train_x=train_x,
        train_y=arrays[TRAIN_LABELS][:n_train].astype(np.int64),
        test_x=test_x,
        test_y=arrays[TEST_LABELS][:n_test].astype(np.int64),
        normalization=norm,
        files={name: str(found[name][1]) for name in FILES},
    )


def load_mnist_sample(size=(1000, 200), dtype=np.float32, normalize=True):
    """The real-MNIST sample shipped with fastconv: the first 1,000 / 200 images.

    No download and no ``FASTCONV_DATA`` needed; every file is checked against the sha256 in
    ``mnist_sample/sha256.json``, as :func:`load_mnist` checks the full set.

    Parameters
    ----------
    size : (int, int)
        First ``n_train`` (<= 1000) and ``n_test`` (<= 200) images.
    dtype, normalize
        As :func:`load_mnist` (the normalization is fitted on the selected sample images).

    Returns
    -------
    MNIST
    """
    import json

    with open(os.path.join(SAMPLE_FOLDER, "sha256.json"), encoding="utf-8") as f:
        sha = json.load(f)
    return load_mnist(folder=SAMPLE_FOLDER, size=size, dtype=dtype, normalize=normalize,
                      expected_sha256=sha, offline=True)
