"""MNIST-layout data sets: MNIST as the reference homework uses it, the named sets that share
its layout (Fashion-MNIST, Kuzushiji-MNIST) and any folder of IDX files in that layout.

A set in the MNIST layout is four IDX files: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
gzip-compressed (``.gz``) or not. Images are uint8 (N, H, W), labels uint8 (N,). They are
zero-padded by 2 pixels on each side (MNIST's 28x28 become the homework's 32x32) and
normalized with the training split's mean and standard deviation.

Where the four files of a named set are looked for, in order (per file):

1. the ``folder`` argument;
2. for MNIST only, the folder named by the ``FASTCONV_DATA`` environment variable;
3. the user cache, ``$XDG_CACHE_HOME/fastconv/NAME`` (default ``~/.cache/fastconv/NAME``,
   NAME being ``mnist``, ``fashion-mnist`` or ``kmnist``);
4. a download into that cache from the set's mirrors, tried in turn, unless offline
   (``offline=True`` or ``FASTCONV_OFFLINE=1``, in which case no socket is opened).

Every file of a named set, wherever it comes from, is decompressed, its IDX header checked
(magic number, 28x28 images, length) and its sha256 compared with the pinned value. A file
that fails raises :class:`DataFileError` naming it; a download that fails any of this moves
on to the next mirror and never reaches the cache under its own name (a download cut short
waits there as a hidden ``.NAME.part`` for the next call to resume). A folder loaded with
:func:`load_idx_folder` has no pins: its files get every other check.
"""
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from .._validation import check_dtype
from ._dataset import Dataset, count_classes
from ._download import fetch_verified
from ._idx import DataFileError, parse_idx, read_bytes

__all__ = [
    "MIRRORS", "SHA256", "FILES", "MNIST", "Normalization", "DataNotFoundError",
    "load_mnist", "load_mnist_sample", "load_named", "load_idx_folder", "NAMED_SETS",
    "NamedSet", "SAMPLE_FOLDER", "cache_dir",
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


@dataclasses.dataclass(repr=False)
class MNIST(Dataset):
    """A loaded data set in the MNIST layout (see :class:`Dataset` for the attributes).

    ``train_x`` and ``test_x`` have shape (N, 1, H + 4, W + 4): (N, 1, 32, 32) for MNIST.
    """


@dataclasses.dataclass(frozen=True)
class NamedSet:
    """A data set in the MNIST layout that fastconv knows by name.

    Attributes
    ----------
    name : str
        Its name for :func:`load_dataset` and ``fastconv train --dataset``.
    title : str
        How messages call it.
    mirrors : tuple of str
        Base URLs of the four files, tried in turn.
    sha256 : dict
        File name -> pinned sha256.
    hashed : {"uncompressed", "file"}
        What ``sha256`` is the hash of: the uncompressed IDX bytes (the same from every
        mirror, whatever its gzip), or the ``.gz`` file as its publisher serves it.
    source : str
        Where the pins come from.
    """

    name: str
    title: str
    mirrors: tuple
    sha256: dict
    hashed: str
    source: str


# sha256 of each *uncompressed* file: gzip output differs between compressors and mirrors,
# the IDX bytes inside do not.
SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Fashion-MNIST and Kuzushiji-MNIST publish no sha256 of their files (torchvision's
# datasets/mnist.py checks md5 sums of the .gz files). The sha256 pins below are those of
# the .gz files at the publishers' URLs, as recorded by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/fashion_mnist.txt and kmnist.txt, with the byte counts
# 26421880, 29515, 4422102, 5148 and 18165135, 29497, 3041136, 5120). They pin the
# compressed files: another copy of the same images, re-compressed, fails the check (load
# it with load_idx_folder instead). fastconv's tests cannot reach these sites; the pins are
# copied, not recomputed.
NAMED_SETS = {
    "mnist": NamedSet(
        "mnist", "MNIST", tuple(MIRRORS), SHA256, "uncompressed",
        "computed by fastconv from the canonical files"),
    "fashion-mnist": NamedSet(
        "fashion-mnist", "Fashion-MNIST",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         # The project's repository: its copy is checked like any mirror's.
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
         "fashion/"),
        {TRAIN_IMAGES: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         TRAIN_LABELS: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         TEST_IMAGES: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         TEST_LABELS: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"},
        "file", "TensorFlow Datasets' url_checksums/fashion_mnist.txt"),
    "kmnist": NamedSet(
        "kmnist", "Kuzushiji-MNIST",
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {TRAIN_IMAGES: "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
         TRAIN_LABELS: "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         TEST_IMAGES: "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
         TEST_LABELS: "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"},
        "file", "TensorFlow Datasets' url_checksums/kmnist.txt"),
}


def cache_dir(name="mnist"):
    """Return the download cache of a named set: ``$XDG_CACHE_HOME/fastconv/NAME`` or
    ``~/.cache/fastconv/NAME``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base-directory spec requires.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastconv" / name


def _offline_from_env():
    return os.environ.get("FASTCONV_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_DTYPE_OF_CODE = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
                  0x0E: "float64"}


def _read_member(path, name, side=None, sha256=None, hashed="uncompressed", title="MNIST",
                 gz=True):
    """Read ``path`` as the layout's file ``name``; return its array or raise DataFileError.

    ``side``: required (H, W) of the images; ``sha256``: the pinned hash (None: no pin);
    ``gz``: whether the file must be gzip (downloads' temporary names do not say).
    """
    raw = read_bytes(path, gz=gz)
    magic = int.from_bytes(raw[:4], "big")
    want = _MAGIC[name]
    if magic != want:
        kind = "uint8 images, 3-D" if want == 0x803 else "uint8 labels, 1-D"
        got = ""
        if len(raw) >= 4 and raw[0] == raw[1] == 0 and raw[2] in _DTYPE_OF_CODE:
            got = f" ({_DTYPE_OF_CODE[raw[2]]}, {raw[3]}-D)"
        raise DataFileError(path, f"wrong magic number for {name}: expected 0x{want:08X} "
                                  f"({kind}), got 0x{magic:08X}{got}")
    array = parse_idx(raw, os.fspath(path))
    if array.ndim == 3:
        if side is not None and array.shape[1:] != side:
            raise DataFileError(path, f"wrong dimensions for {name}: expected (N, {side[0]}, "
                                      f"{side[1]}), got {array.shape}")
        if min(array.shape[1:]) < 1:
            raise DataFileError(path, f"wrong dimensions for {name}: images of "
                                      f"{array.shape[1]}x{array.shape[2]} pixels")
    if sha256 is not None:
        digest = (hashlib.sha256(raw).hexdigest() if hashed == "uncompressed"
                  else _file_sha256(path))
        what = "uncompressed" if hashed == "uncompressed" else "as published"
        if digest != sha256[name]:
            raise DataFileError(path, f"sha256 mismatch for {name} ({what}): expected "
                                      f"{sha256[name]}, got {digest}; the file is damaged or "
                                      f"not the canonical {title} file")
    return array


def _check_file(path, name, expected_sha256, hashed="uncompressed", title="MNIST"):
    """Read ``path`` as file ``name`` of a named set (28x28 images, labels 0-9); return its
    array or raise DataFileError."""
    array = _read_member(path, name, (28, 28), expected_sha256, hashed, title)
    if array.ndim == 1 and array.size and array.max() > 9:
        raise DataFileError(path, f"labels must be 0-9; found {array.max()}")
    return array


def _places(folder, use_env=True, cache=None):
    """(description, folder or None, reason when None) for each local place, in order."""
    places = []
    if folder is None:
        places.append(("folder argument", None, "not given"))
    else:
        places.append((f"folder argument {folder}", Path(folder), None))
    if use_env:
        env = os.environ.get("FASTCONV_DATA")
        if env:
            places.append((f"FASTCONV_DATA={env}", Path(env), None))
        else:
            places.append(("FASTCONV_DATA", None, "not set"))
    cache = cache_dir() if cache is None else cache
    places.append((f"cache {cache}", cache, None))
    return places


def _gather(folder, expected_sha256, mirrors, offline, named=None):
    """Return {name: (array, path)} for the four files, or raise DataNotFoundError."""
    named = named or NAMED_SETS["mnist"]
    is_mnist = named.name == "mnist"
    cache = cache_dir(named.name)
    places = _places(folder, use_env=is_mnist, cache=cache)

    def check(path, name):
        return _check_file(path, name, expected_sha256, named.hashed, named.title)

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
                found[name] = (check(place / name, name), place / name)
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
                name, cache, mirrors, lambda path, name=name: check(path, name))
        except OSError as exc:
            attempts, ok = [(f"cache {cache}", f"cannot write: {exc}")], False
        tried[name].extend(attempts)
        if not ok:
            # Later files would only fail the same way, each after its own timeouts.
            break
        found[name] = (array, cache / name)

    missing = [name for name in FILES if name not in found]
    if missing:
        lines = [f"cannot load {named.title}: no valid copy of {', '.join(missing)}."]
        for name in missing:
            lines.append(f"  {name}:")
            lines.extend(f"    {where}: {reason}" for where, reason in tried[name])
        hint = _HINT_MIRROR if is_mnist else named.mirrors[0]
        env = ", or pass folder= or set FASTCONV_DATA to the folder holding them." if is_mnist \
            else ", or pass folder= naming the folder holding them."
        lines.append(f"Put the four files {', '.join(FILES)} (from any {named.title} mirror, "
                     f"e.g. {hint}) in {cache}{env}")
        raise DataNotFoundError("\n".join(lines))
    return found


def _resolve_size(size, n_train, n_test, fn="load_mnist"):
    if isinstance(size, str):
        if size not in _SIZES:
            raise ValueError(f"{fn}: size must be 'full', 'small' or (n_train, n_test); "
                             f"got {size!r}")
        want = _SIZES[size] if size == "small" else (n_train, n_test)
    else:
        try:
            want = tuple(int(s) for s in size)
        except TypeError:
            raise ValueError(f"{fn}: size must be 'full', 'small' or (n_train, n_test); "
                             f"got {size!r}") from None
        if len(want) != 2 or min(want) < 1:
            raise ValueError(f"{fn}: size (n_train, n_test) must be two positive "
                             f"integers; got {size!r}")
    if want[0] > n_train or want[1] > n_test:
        raise ValueError(f"{fn}: size {size!r} asks for {want[0]} train / {want[1]} test "
                         f"images; the files hold {n_train} / {n_test}")
    return want


def _fit_normalization(images, pad=_PAD):
    """Mean and std of uint8 ``images`` (N, H, W) after zero padding by ``pad``.

    Works on a 256-bin histogram: exact, and no float copy of 47 M pixels. The std uses
    n - 1 in the denominator, like Torch's ``std()`` that the homework called.
    """
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    n_images, h, w = images.shape
    counts[0] += n_images * ((h + 2 * pad) * (w + 2 * pad) - h * w)
    values = np.arange(256, dtype=np.float64)
    n = counts.sum()
    if n < 2:
        raise ValueError("cannot fit a normalization on fewer than 2 pixels")
    mean = (counts @ values) / n
    var = (counts @ (values - mean) ** 2) / (n - 1)
    if not var > 0:
        raise ValueError(f"every training pixel is {mean:g}: nothing to learn from, and no "
                         f"standard deviation to normalize by")
    return Normalization(mean, np.sqrt(var))


def _to_float(images, dtype, norm, pad=_PAD):
    """Pad uint8 (N, H, W) images to float (N, 1, H + 2 pad, W + 2 pad), normalizing if
    ``norm``.

    A 256-entry lookup table computed in float64 maps each pixel value to its final number,
    so float32 output is rounded once and costs no float64 temporary of the whole set.
    """
    table = np.arange(256, dtype=np.float64)
    if norm is not None:
        table = (table - norm.mean) / norm.std
    table = table.astype(dtype)
    n, h, w = images.shape
    out = np.full((n, 1, h + 2 * pad, w + 2 * pad), table[0], dtype=dtype)
    out[:, 0, pad:pad + h, pad:pad + w] = table[images]
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
    _check_normalize(normalize, "load_mnist")
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
    return _assemble(found, size, dtype, normalize, local_contrast, "mnist", 10, "load_mnist")


def _assemble(found, size, dtype, normalize, local_contrast, name, n_classes, fn):
    """The :class:`MNIST` of four checked arrays ``found`` ({file: (array, path)}): counts
    matched, first ``size`` images taken, padded, normalized."""
    arrays = {f: found[f][0] for f in FILES}
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if len(arrays[images]) != len(arrays[labels]):
            raise DataFileError(found[labels][1], f"{len(arrays[labels])} labels for "
                                f"{len(arrays[images])} images in {found[images][1]}")
    if arrays[TRAIN_IMAGES].shape[1:] != arrays[TEST_IMAGES].shape[1:]:
        raise DataFileError(found[TEST_IMAGES][1], f"test images are "
                            f"{arrays[TEST_IMAGES].shape[1:]} pixels, training images "
                            f"{arrays[TRAIN_IMAGES].shape[1:]} in {found[TRAIN_IMAGES][1]}; "
                            f"both splits must have one size")
    for f in (TRAIN_IMAGES, TEST_IMAGES):
        if len(arrays[f]) == 0:
            raise DataFileError(found[f][1], "holds no images (N = 0)")
    # Classes are counted on the whole files: a model trained on the first images of a set
    # must still fit the set.
    n_classes = count_classes(arrays[TRAIN_LABELS], arrays[TEST_LABELS],
                              found[TRAIN_LABELS][1], found[TEST_LABELS][1], n_classes)
    n_train, n_test = _resolve_size(size, len(arrays[TRAIN_IMAGES]), len(arrays[TEST_IMAGES]),
                                    fn)
    train_y = arrays[TRAIN_LABELS][:n_train].astype(np.int64)
    test_y = arrays[TEST_LABELS][:n_test].astype(np.int64)

    train_images = arrays[TRAIN_IMAGES][:n_train]
    test_images = arrays[TEST_IMAGES][:n_test]
    if normalize is True:
        try:
            norm = _fit_normalization(train_images)
        except ValueError as exc:
            raise DataFileError(found[TRAIN_IMAGES][1], str(exc)) from None
    else:
        norm = normalize or None
    train_x = _to_float(train_images, dtype, norm)
    test_x = _to_float(test_images, dtype, norm)
    if local_contrast:
        train_x = _local_contrast(train_x)
        test_x = _local_contrast(test_x)
    log.info("loaded %s: %d train, %d test images", name, n_train, n_test)
    return MNIST(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                 normalization=norm, files={f: str(found[f][1]) for f in FILES}, name=name,
                 n_classes=n_classes, padding=_PAD)


def _check_normalize(normalize, fn):
    if not isinstance(normalize, (bool, Normalization)):
        raise TypeError(f"{fn}: normalize must be a bool or a Normalization; "
                        f"got {type(normalize).__name__}")


def load_named(name, folder=None, size="full", dtype=np.float32, normalize=True,
               local_contrast=False, mirrors=None, offline=None):
    """Load a named data set in the MNIST layout: ``"mnist"``, ``"fashion-mnist"`` or
    ``"kmnist"``.

    Each file is looked for in ``folder``, (for MNIST) ``FASTCONV_DATA``, the cache
    ``$XDG_CACHE_HOME/fastconv/NAME``, then downloaded into that cache; every file is
    checked against its pinned sha256 (:data:`NAMED_SETS`; see the module docstring).

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "kmnist"}
    folder : str or os.PathLike, optional
        Folder holding the four ``.gz`` files as published.
    size, dtype, normalize, local_contrast, mirrors, offline
        As :func:`load_mnist`; ``mirrors`` defaults to the set's own.

    Returns
    -------
    MNIST
        Images (N, 1, 32, 32), 10 classes.

    Raises
    ------
    DataFileError
        A file is truncated, corrupt, not IDX, or fails its pinned sha256.
    DataNotFoundError
        No place has the files and no mirror gave them.

    Examples
    --------
    >>> data = load_named("fashion-mnist", size="small")      # doctest: +SKIP
    >>> data.input_shape, data.n_classes                       # doctest: +SKIP
    ((1, 32, 32), 10)
    """
    if name not in NAMED_SETS:
        raise ValueError(f"load_named: unknown data set {name!r}; choose from "
                         f"{list(NAMED_SETS)}")
    if name == "mnist":
        return load_mnist(folder, size, dtype, normalize, local_contrast, mirrors, offline)
    named = NAMED_SETS[name]
    dtype = check_dtype(dtype, "load_named")
    _check_normalize(normalize, "load_named")
    mirrors = named.mirrors if mirrors is None else \
        ([mirrors] if isinstance(mirrors, str) else mirrors)
    offline = _offline_from_env() if offline is None else offline
    found = _gather(folder, named.sha256, list(mirrors), offline, named)
    return _assemble(found, size, dtype, normalize, local_contrast, name, 10, "load_named")


def _idx_path(folder, name):
    """The file of the layout's ``name`` in ``folder``: the ``.gz`` or, failing that, the
    uncompressed file (as unpacked by gunzip)."""
    for candidate in (folder / name, folder / name[:-3]):
        if candidate.is_file():
            return candidate
    if (folder / name).exists():
        raise DataFileError(folder / name, "is not a regular file")
    raise DataFileError(folder / name, f"no such file (nor {name[:-3]}); an IDX folder holds "
                                       f"{', '.join(FILES)}, compressed or not")


def load_idx_folder(folder, size="full", dtype=np.float32, normalize=True,
                    local_contrast=False):
    """Load any folder of IDX files in the MNIST layout, such as a Fashion-MNIST copy.

    The folder holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with or without
    ``.gz``. No checksum is needed: each file's format (magic number, uint8, header against
    length), the image sizes and the counts are checked, and the labels must be classes
    0 .. K-1. The images are zero-padded by 2 pixels on each side, as MNIST is, and
    normalized with the training split's mean and standard deviation, which the result
    carries (``normalization``) for the model file.

    Parameters
    ----------
    folder : str or os.PathLike
    size, dtype, normalize, local_contrast
        As :func:`load_mnist`.

    Returns
    -------
    MNIST
        Images (N, 1, H + 4, W + 4); ``n_classes`` = the largest training label + 1.

    Raises
    ------
    DataFileError
        A file is missing, truncated, corrupt, not uint8 IDX, or disagrees with another (the
        message names it).

    Examples
    --------
    >>> data = load_idx_folder("fashion")              # doctest: +SKIP
    >>> data.input_shape, data.n_classes               # doctest: +SKIP
    ((1, 32, 32), 10)
    """
    dtype = check_dtype(dtype, "load_idx_folder")
    _check_normalize(normalize, "load_idx_folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFileError(folder, "no such folder")
    found = {}
    for name in FILES:
        path = _idx_path(folder, name)
        found[name] = (_read_member(path, name, gz=path.name.endswith(".gz")), path)
    return _assemble(found, size, dtype, normalize, local_contrast, "idx", None,
                     "load_idx_folder")


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
