"""Your own digit images, prepared the way MNIST was, for a model trained on MNIST.

MNIST's digits are light strokes on a black background, scaled (keeping the aspect ratio) to
fit a 20x20 box with anti-aliasing, and placed in a 28x28 image so that their centre of mass
is at the centre (LeCun et al.'s description of the data set). fastconv then pads them to 32x32
and normalizes them with the training set's mean and std (:func:`fastconv.datasets.load_mnist`).
:func:`prepare_digits` repeats every one of these steps for an image of any size and either
polarity:

1. grey values scaled to [0, 1]; a light background (judged from the image border) is
   inverted, so the digit is light on dark as in MNIST;
2. the background level (median of the border) is subtracted and the contrast stretched;
3. the digit's bounding box is cut out and resized, longest side 20 pixels, anti-aliased;
4. it is placed in 28x28 with its centre of mass at the centre, rounded to 0-255 integers;
5. the same padding, normalization (and local contrast normalization, when the model was
   trained with it) as the training data.
"""
import os
import warnings

import numpy as np

from .._errors import PathError

__all__ = ["ImageError", "read_digit_images", "prepare_digits", "to_mnist_28"]

_BOX = 20          # MNIST: digits fit a 20x20 box ...
_SIDE = 28         # ... inside a 28x28 image
_INK = 0.2         # after stretching, pixels above this are part of the digit's box
#: Most pixels of one image (or one ``.npy`` stack, all images together) that
#: :func:`read_digit_images` decodes: 16 Mpixels (a 4000x4000 photo) take 128 MiB as
#: float64. A larger image is refused from its header, before it is decoded.
MAX_PIXELS = 16 * 2**20


class ImageError(PathError):
    """An image file cannot be read, or holds no digit (``path``, ``problem``)."""


def _too_large(shape):
    pixels = 1
    for d in shape:
        pixels *= int(d)
    if pixels > MAX_PIXELS:
        dims = "x".join(str(int(d)) for d in shape)
        return (f"is {dims} pixels, more than the {MAX_PIXELS:,} accepted; scale it down "
                f"(a digit needs about 28x28)")
    return None


def _grey(path):
    """A PNG (or any image Pillow reads) as a 2-D float array in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        # Image.open reads the header only: the size is checked before anything is decoded.
        # Pillow's own decompression-bomb limit is far above ours; ours comes first.
        with warnings.catch_warnings():
            # Pillow warns of sizes past its own limit; ours is lower and checked next.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            problem = _too_large(img.size[::-1])
            if problem:
                raise ImageError(path, problem)
            img.load()
            if img.mode.startswith("I") or img.mode == "F":
                a = np.asarray(img, dtype=np.float64)
                if not np.all(np.isfinite(a)):
                    raise ImageError(path, "holds NaN or infinite values")
                top = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
                return np.clip(a / top, 0.0, 1.0)
            # Transparent pixels count as white paper: a digit drawn on a transparent
            # background is usually dark strokes.
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image Pillow can read (use PNG, or a .npy array)") \
            from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"is too large to decode ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        # Pillow's plugins raise all of these for damaged files.
        raise ImageError(path, f"cannot read the image ({type(exc).__name__}: {exc})") \
            from None
    luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = rgba[..., 3]
    return luminance * alpha + (1.0 - alpha)


def _from_npy(path):
    from .._npyfile import NpyHeaderError, read_npy_header

    try:
        with open(path, "rb") as f:
            head = f.read(6)
            if head[:2] == b"PK":
                raise ImageError(path, "is an .npz archive, not an .npy array; save one "
                                       "array with np.save")
            if head != b"\x93NUMPY":
                raise ImageError(path, f"not an .npy array (it starts with {head!r}); save "
                                       f"the image with np.save")
            f.seek(0)
            shape, dtype, _ = read_npy_header(f, os.fstat(f.fileno()).st_size, "the .npy header")
            if dtype.kind not in "iuf":
                raise ImageError(path, f"holds {dtype} values; images are numbers")
            problem = _too_large(shape)
            if problem:
                raise ImageError(path, problem)
            f.seek(0)
            a = np.load(f, allow_pickle=False)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except NpyHeaderError as exc:
        raise ImageError(path, str(exc)) from None
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(path, f"not a readable .npy array ({exc})") from None
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim not in (2, 3) or a.dtype.kind not in "iuf" or a.size == 0:
        raise ImageError(path, f"needs one image (H, W) or a stack (N, H, W) of numbers; got "
                               f"shape {a.shape}, dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ImageError(path, "holds NaN or infinite values")
    # Grey levels 0-255 (as MNIST's bytes) or 0-1.
    top = 255.0 if a.max() > 1.0 else 1.0
    a = np.clip(a / top, 0.0, 1.0)
    return a


def read_digit_images(paths):
    """Read PNG files (any image Pillow reads) and ``.npy`` arrays as grey images.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        ``.npy`` files hold one image (H, W) or a stack (N, H, W) or (N, 1, H, W), grey levels
        0-255 or 0-1; any other file is opened as an image.

    Returns
    -------
    names : list of str
        One per image: the path, with ``[i]`` appended for the images of a stack.
    images : list of ndarray
        2-D float64 arrays in [0, 1], in the image's own size and polarity.

    Raises
    ------
    ImageError
        A file is missing or unreadable.
    """
    names, images = [], []
    for path in paths:
        path = os.fspath(path)
        if path.lower().endswith(".npy"):
            a = _from_npy(path)
            if a.ndim == 2:
                names.append(path)
                images.append(a)
            else:
                names.extend(f"{path}[{i}]" for i in range(len(a)))
                images.extend(a)
        else:
            names.append(path)
            images.append(_grey(path))
    return names, images


def _resize(a, shape):
    from PIL import Image

    # Pillow's Lanczos filter widens its support when shrinking, so it anti-aliases as
    # MNIST's preparation did; mode "F" keeps float precision.
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.LANCZOS), dtype=np.float64)


def _border(a):
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def to_mnist_28(image, name="image"):
    """One grey image (any size and polarity, values in [0, 1]) as an MNIST-style 28x28 uint8.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    name : str
        For error messages.

    Returns
    -------
    ndarray of uint8, shape (28, 28)
        Light digit on black, fitted into 20x20, centre of mass at the centre.

    Raises
    ------
    ImageError
        The image is blank (no contrast) or smaller than 2x2.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 2:
        raise ImageError(name, f"needs a 2-D image of at least 2x2 pixels; got shape {a.shape}")
    if np.median(_border(a)) > 0.5:
        a = 1.0 - a
    background = np.median(_border(a))
    top = a.max()
    if top - background < 0.05:
        raise ImageError(name, "no digit found (the image has no contrast)")
    a = np.clip((a - background) / (top - background), 0.0, 1.0)
    rows = np.flatnonzero((a > _INK).any(axis=1))
    cols = np.flatnonzero((a > _INK).any(axis=0))
    a = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = a.shape
    scale = _BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    digit = np.clip(_resize(a, size), 0.0, 1.0)
    out = np.zeros((_SIDE, _SIDE))
    mass = digit.sum()
    ys, xs = np.indices(digit.shape)
    cy, cx = (ys * digit).sum() / mass, (xs * digit).sum() / mass
    # Put the centre of mass at the image centre; keep the whole box inside the image.
    top_row = int(np.clip(round(_SIDE / 2 - 0.5 - cy), 0, _SIDE - size[0]))
    left = int(np.clip(round(_SIDE / 2 - 0.5 - cx), 0, _SIDE - size[1]))
    out[top_row:top_row + size[0], left:left + size[1]] = digit
    return np.rint(out * 255).astype(np.uint8)


def prepare_digits(images, normalization=None, local_contrast=False, dtype=np.float32,
                   names=None):
    """Turn grey digit images into model inputs exactly as :func:`load_mnist` prepares MNIST.

    Parameters
    ----------
    images : list of ndarray
        2-D grey images in [0, 1] (see :func:`read_digit_images`); any size, either polarity.
    normalization : Normalization or dict, optional
        The training set's statistics (a model file's ``metadata["normalization"]``); None
        leaves pixels on the 0-255 scale, as ``load_mnist(normalize=False)``.
    local_contrast : bool
        Apply the local contrast normalization the model was trained with.
    dtype : {numpy.float32, numpy.float64}
        The model's dtype.
    names : list of str, optional
        Names of the images, for error messages.

    Returns
    -------
    ndarray, shape (N, 1, 32, 32)
    """
    from .mnist import Normalization, _local_contrast, _to_float

    if isinstance(normalization, dict):
        normalization = Normalization.from_dict(normalization)
    names = names or [f"image {i}" for i in range(len(images))]
    digits = np.stack([to_mnist_28(img, name) for img, name in zip(images, names)])
    x = _to_float(digits, np.dtype(dtype), normalization)
    return _local_contrast(x) if local_contrast else x
