"""Model files, their schema, and atomic writes.

A model file is a NumPy ``.npz`` archive (loaded with ``allow_pickle=False``, so it can hold
no code) with:

- ``__config__``: a 0-d unicode array holding JSON: ``{"format": "fastconv-model",
  "version": 1, "architecture": <Module.config()>, "metadata": {...}}``. Metadata carries,
  for example, the normalization mean/std of the training set and the loss name.
- ``param_000``, ``param_001``, ...: the parameter arrays in :meth:`Module.params` order.
- ``buffer_000``, ...: non-parameter state (e.g. BatchNorm's running statistics) in
  :meth:`Module.buffers` order; absent when the model has none.

:func:`load_model` checks a file against this schema as it reads it (archive integrity, keys,
JSON types, nesting depth, module types and their settings, parameter count, dtype and
shapes, and optionally the input and output shapes), so that any malformed file is one
:class:`ModelFileError` naming the file and what is wrong, never an exception from deep
inside NumPy, ``zipfile`` or a layer's constructor.

Sizes come before contents: the zip directory and every ``.npy`` header are read first, and
a header that declares more (or fewer) bytes than its entry holds, or entries that together
declare more than :func:`memory_budget` (``BUDGET_FACTOR`` x the file's size +
``BUDGET_BYTES``), are refused before any array is read; the shapes the declared
architecture needs (:meth:`fastconv.nn.Module.array_shapes`) are compared with the stored
ones before anything is built. Checkpoints go through the same :func:`read_npz`.
"""
import glob
import inspect
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from ._errors import PathError
from ._npyfile import NPY_MAX_HEADER, NpyHeaderError, read_npy_header
from .nn.module import _REGISTRY, module_from_config

__all__ = ["save_model", "load_model", "load_ensemble", "dataset_record", "read_npz", "memory_budget", "forward_one_sample",
           "ModelFileError", "EnsembleError", "atomic_write_bytes",
           "atomic_savez", "atomic_write_text", "remove_stale_temporaries"]


def _read_umask():
    # os.umask can only be read by setting it; do it once, at import, not per write.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
FORMAT = "fastconv-model"
VERSION = 1
#: Deepest nesting of JSON containers accepted in a model's or checkpoint's description.
#: The homework's models need 4 (config -> architecture -> layers -> layer); the bound keeps a
#: hostile file from exhausting the recursion limit.
MAX_DEPTH = 16
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class ModelFileError(PathError):
    """A model or checkpoint file is missing, unreadable or does not follow the schema
    (``path``, ``problem``)."""


class EnsembleError(ValueError):
    """Model files that are each valid but cannot vote together: trained on different data
    sets, or ending in different heads (``paths``: the two files that disagree)."""

    def __init__(self, paths, message):
        self.paths = [os.fspath(p) for p in paths]
        super().__init__(message)


def _tmp_prefix(path):
    return os.path.basename(path) + "."


def _atomic(path, write):
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, then rename.

    A reader never sees a half-written file; an interrupted write leaves a
    ``<name>.<random>.tmp`` file that :func:`remove_stale_temporaries` deletes.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(path), suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename).

    Parameters
    ----------
    path : str or os.PathLike
    data : bytes
    """
    _atomic(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically, UTF-8 encoded, line endings unchanged.

    Parameters
    ----------
    path : str or os.PathLike
    text : str
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path, **arrays):
    """``np.savez`` to ``path`` atomically (``path`` is used exactly, no suffix added).

    Parameters
    ----------
    path : str or os.PathLike
    **arrays : ndarray
        Stored under their keyword names.
    """
    _atomic(path, lambda f: np.savez(f, **arrays))


def remove_stale_temporaries(folder, names):
    """Delete the temporary files that interrupted atomic writes of ``names`` left in ``folder``.

    Only files named like :func:`atomic_savez`'s temporaries (``<name>.<random>.tmp``) for the
    given names are touched.

    Parameters
    ----------
    folder : str or os.PathLike
    names : iterable of str
        File names written atomically into ``folder`` (e.g. ``"model.npz"``).

    Returns
    -------
    list of str
        The paths removed.
    """
    removed = []
    for name in names:
        pattern = os.path.join(glob.escape(os.fspath(folder)),
                               glob.escape(_tmp_prefix(name)) + "*.tmp")
        for path in glob.glob(pattern):
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _json_array(obj):
    return np.array(json.dumps(obj, sort_keys=True))


def save_model(path, model, metadata=None):
    """Save ``model``'s architecture, parameters and ``metadata`` to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly (no ``.npz`` suffix is added).
    model : fastconv.nn.Module
    metadata : dict, optional
        JSON-serialisable; stored with the model (e.g. the data normalization, the loss).
    """
    config = {"format": FORMAT, "version": VERSION, "architecture": model.config(),
              "metadata": metadata or {}}
    arrays = {f"param_{i:03d}": np.asarray(p) for i, p in enumerate(model.params())}
    arrays.update({f"buffer_{i:03d}": np.asarray(b) for i, b in enumerate(model.buffers())})
    atomic_savez(path, __config__=_json_array(config), **arrays)


# -- reading ------------------------------------------------------------------------------
#: The bytes of arrays one model file or checkpoint may declare, besides its own size: past
#: ``BUDGET_FACTOR`` x the file's size + ``BUDGET_BYTES``, it is refused before anything is
#: read. fastconv writes uncompressed archives, whose arrays take the file's size; the
#: allowance covers archives recompressed with ``np.savez_compressed``.
BUDGET_FACTOR = 4
BUDGET_BYTES = 16 * 2**20
#: Most bytes of a JSON entry (``__config__``, ``__meta__``); the homework's models take 2 KB.
MAX_JSON_BYTES = 4 * 2**20
#: Most entries in one archive.
MAX_ENTRIES = 10000


def _shown(names):
    """Names from a file, joined for a message: quoted when not printable, so that a name
    holding a newline cannot break the message's one line."""
    return ", ".join(n if n.isprintable() else repr(n) for n in names)


def memory_budget(path):
    """Bytes of arrays a model file or checkpoint at ``path`` may declare or make a loader
    allocate: ``BUDGET_FACTOR`` x its size + ``BUDGET_BYTES``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    int
    """
    return BUDGET_FACTOR * os.path.getsize(path) + BUDGET_BYTES


class _Npz:
    """An ``.npz`` archive whose entries' names, shapes and dtypes are known (from the zip
    directory and the ``.npy`` headers) before any array is read."""

    def __init__(self, path, what):
        self.path, self.what = path, what
        self._zip = zipfile.ZipFile(path)
        infos = self._zip.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ModelFileError(path, f"holds {len(infos):,} entries; a {what} has far fewer")
        self.entries = {}       # key -> (shape, dtype, ZipInfo)
        total = 0
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or key in self.entries:
                raise ModelFileError(path, f"entry {info.filename!r} is not a NumPy array "
                                           f"of a {what} (or appears twice)")
            total += info.file_size
            with self._zip.open(info) as fp:
                shape, dtype, _ = read_npy_header(fp, info.file_size, _shown([key]))
            self.entries[key] = (shape, dtype, info)
        budget = memory_budget(path)
        if total > budget:
            raise ModelFileError(path, f"its entries declare {total:,} bytes of arrays, more "
                                       f"than the {budget:,} bytes allowed for a "
                                       f"{os.path.getsize(path):,}-byte {what}")

    def read(self, key):
        from numpy.lib import format as npy

        with self._zip.open(self.entries[key][2]) as fp:
            return npy.read_array(fp, allow_pickle=False, max_header_size=NPY_MAX_HEADER)

    def close(self):
        self._zip.close()


# Everything a damaged archive makes zipfile, zlib or NumPy raise.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                   NotImplementedError, OverflowError, UnicodeDecodeError)


def _open_npz(path, what):
    """Check ``path`` as an ``.npz`` archive (kind, entries, declared sizes); a :class:`_Npz`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise ModelFileError(path, f"no such {what}") from None
    except IsADirectoryError:
        raise ModelFileError(path, f"is a folder, not a {what}") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    if not head:
        raise ModelFileError(path, f"the {what} is empty (0 bytes)")
    if head not in _ZIP_MAGIC:
        raise ModelFileError(path, f"not a {what}: a {what} is a NumPy .npz (zip) archive, "
                                   f"this file starts with {head!r}")
    try:
        return _Npz(path, what)
    except ModelFileError:
        raise
    except NpyHeaderError as exc:
        raise ModelFileError(path, str(exc)) from None
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(path, what, exc) from None


def _corrupt(path, what, exc):
    return ModelFileError(path, f"the {what} is truncated or corrupt "
                                f"({type(exc).__name__}: {exc})")


def _read_entries(archive, keys):
    try:
        return {key: archive.read(key) for key in keys}
    except _ARCHIVE_ERRORS as exc:
        raise _corrupt(archive.path, archive.what, exc) from None


def read_npz(path, what="model file", allowed=None):
    """Read every array of an ``.npz`` archive into memory, refusing pickled objects.

    Entry names, shapes and dtypes are read from the zip directory and the ``.npy``
    headers and checked first: the arrays are read only when every header matches its
    entry's size and all together fit :func:`memory_budget`.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        How the file is called in error messages ("model file", "checkpoint").
    allowed : callable, optional
        ``allowed(name)`` is False for an entry name the file must not hold; such a file is
        refused before any array is read.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    ModelFileError
        The file is missing, empty, not a zip archive, truncated, corrupt (CRC mismatch),
        holds an entry that is not a plain array or that ``allowed`` refuses, an ``.npy``
        header that lies about its size, or more bytes than its budget.
    """
    archive = _open_npz(path, what)
    try:
        if allowed is not None:
            bad = sorted(k for k in archive.entries if not allowed(k))
            if bad:
                shown = _shown(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                raise ModelFileError(archive.path, f"has unexpected entries {shown}")
        return _read_entries(archive, list(archive.entries))
    finally:
        archive.close()


def _json_depth(obj, limit, depth=1):
    """Depth of nested lists/dicts in ``obj``, stopping as soon as ``limit`` is passed."""
    if depth > limit:
        return depth
    if isinstance(obj, dict):
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return depth - 1
    return max([depth] + [_json_depth(c, limit, depth + 1) for c in children])


def _parse_json_entry(path, value, key, what="model file"):
    """Decode a 0-d unicode array holding JSON (``__config__``, ``__meta__``) into a dict.

    Parameters
    ----------
    path : str
        For error messages.
    value : ndarray
        The stored entry.
    key : str
        Its name in the archive.
    what : str
        How the file is called in error messages.

    Returns
    -------
    dict

    Raises
    ------
    ModelFileError
        The entry is not a 0-d string, not JSON, not an object, or nested deeper than
        :data:`MAX_DEPTH`.
    """
    if value.shape != () or value.dtype.kind != "U":
        raise ModelFileError(path, f"{key} must be a 0-d unicode array holding JSON; got "
                                   f"shape {value.shape}, dtype {value.dtype}")
    text = str(value)
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ModelFileError(path, f"{key} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ModelFileError(path, f"{key} is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(path, f"{key} must be a JSON object; got a "
                                   f"{type(obj).__name__}")
    if _json_depth(obj, MAX_DEPTH) > MAX_DEPTH:
        raise ModelFileError(path, f"{key} is nested deeper than {MAX_DEPTH} levels")
    return obj


def _check_architecture(path, node, where="architecture"):
    """Check one module description (recursively for containers) before building it."""
    if not isinstance(node, dict):
        raise ModelFileError(path, f"{where} must be a JSON object; got "
                                   f"{type(node).__name__}")
    kind = node.get("type")
    if not isinstance(kind, str):
        raise ModelFileError(path, f"{where} has no \"type\" string")
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ModelFileError(path, f"{where} has unknown module type {kind!r}; known: "
                                   f"{', '.join(sorted(_REGISTRY))}")
    settings = {k: v for k, v in node.items() if k != "type"}
    if kind == "Sequential":
        if set(settings) != {"layers"} or not isinstance(settings["layers"], list):
            raise ModelFileError(path, f"{where} (Sequential) needs exactly a \"layers\" list; "
                                       f"got keys {sorted(settings)}")
        for i, child in enumerate(settings["layers"]):
            _check_architecture(path, child, f"{where}.layers[{i}]")
        return
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n, p in params.items() if n not in ("self", "rng")
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ModelFileError(path, f"{where} ({kind}) has unknown setting(s) "
                                   f"{_shown(unknown)}; {kind} accepts "
                                   f"{', '.join(sorted(accepted)) or 'none'}")
    missing = sorted(n for n in accepted if params[n].default is inspect.Parameter.empty
                     and n not in settings)
    if missing:
        raise ModelFileError(path, f"{where} ({kind}) lacks required setting(s) "
                                   f"{', '.join(missing)}")


def _with_dtype(node, dtype):
    """A copy of ``node`` in which every layer that takes a dtype but names none gets ``dtype``."""
    if dtype is None:
        return node
    node = dict(node)
    if node["type"] == "Sequential":
        node["layers"] = [_with_dtype(child, dtype) for child in node["layers"]]
    elif "dtype" not in node and "dtype" in inspect.signature(
            _REGISTRY[node["type"]].__init__).parameters:
        node["dtype"] = str(dtype)
    return node


def _check_metadata(path, metadata):
    from .datasets import Normalization
    from .nn.loss import LOSSES

    if not isinstance(metadata, dict):
        raise ModelFileError(path, f"metadata must be a JSON object; got "
                                   f"{type(metadata).__name__}")
    norm = metadata.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            raise ModelFileError(path, f"metadata.normalization must be an object with mean "
                                       f"and std; got {type(norm).__name__}")
        try:
            Normalization.from_dict(norm)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(path, f"metadata.normalization is invalid ({exc})") from None
    if "local_contrast" in metadata and not isinstance(metadata["local_contrast"], bool):
        raise ModelFileError(path, "metadata.local_contrast must be true or false")
    loss = metadata.get("loss")
    if loss is not None and (not isinstance(loss, str) or loss not in LOSSES):
        raise ModelFileError(path, f"metadata.loss {loss!r} is not one of "
                                   f"{', '.join(sorted(LOSSES))}")


def _implied_arrays(path, node, where="architecture"):
    """The parameter and buffer shapes (each with the layer it belongs to) and the other
    elements that building ``node`` would allocate, computed without building it."""
    if node["type"] == "Sequential":
        params, buffers, other = [], [], 0
        for i, child in enumerate(node["layers"]):
            p, b, o = _implied_arrays(path, child, f"{where}.layers[{i}]")
            params += p
            buffers += b
            other += o
        return params, buffers, other
    settings = {k: v for k, v in node.items() if k != "type"}
    label = f"{where} ({node['type']})"
    try:
        params, buffers, other = _REGISTRY[node["type"]].array_shapes(settings)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(path, f"architecture cannot be built ({label}: "
                                   f"{type(exc).__name__}: {exc})") from None
    return ([(label, tuple(s)) for s in params], [(label, tuple(s)) for s in buffers],
            int(other))


def _entry_problem(key, value):
    """Why a stored parameter or buffer cannot be loaded, or None."""
    if value.dtype not in (np.float32, np.float64):
        return f"{key} has dtype {value.dtype}; parameters and buffers are float32 or float64"
    if not np.all(np.isfinite(value)):
        return f"{key} holds NaN or infinite values"
    return None


def load_model(path, *, input_shape=None, n_outputs=None):
    """Load a model saved by :func:`save_model`, checking the file against the schema.

    Everything is checked before the model is built: the entries' names, the ``.npy``
    headers against the entries' sizes, the configuration, and the shapes of the arrays the
    declared architecture needs against those stored (so that a small file cannot declare a
    huge network), all within :func:`memory_budget`; then the values (finite floats).

    Parameters
    ----------
    path : str or os.PathLike
    input_shape : tuple of int, optional
        Shape of one input sample, e.g. ``(1, 32, 32)``. When given, the model is run once
        on zeros of this shape, and a model that cannot take such inputs, or whose layers
        would produce outputs beyond the memory budget for one sample, is refused.
    n_outputs : int, optional
        Needs ``input_shape``: the model must produce this many outputs per sample (e.g. 10
        classes for MNIST).

    Returns
    -------
    model : fastconv.nn.Module
        In evaluation mode, parameters in the saved dtype.
    metadata : dict

    Raises
    ------
    ModelFileError
        For any file that is missing, unreadable or breaks the schema; the message names
        the file and the problem.
    """
    path = os.fspath(path)
    archive = _open_npz(path, "model file")
    try:
        return _load_model(path, archive, input_shape, n_outputs)
    finally:
        archive.close()


def _load_model(path, archive, input_shape, n_outputs):
    entries = archive.entries
    if "__config__" not in entries:
        raise ModelFileError(path, "has no __config__ entry; not a fastconv model file")
    saved = sorted(k for k in entries if k.startswith("param_"))
    buffers = sorted(k for k in entries if k.startswith("buffer_"))
    extra = sorted(set(entries) - set(saved) - set(buffers) - {"__config__"})
    if extra:
        raise ModelFileError(path, f"has unexpected entries {_shown(extra[:5])}"
                                   f"{' ...' if len(extra) > 5 else ''}")
    expected_keys = [f"param_{i:03d}" for i in range(len(saved))]
    if saved != expected_keys:
        raise ModelFileError(path, f"parameter entries must be param_000 ... param_"
                                   f"{len(saved) - 1:03d} without gaps; got "
                                   f"{_shown(saved[:5])}{' ...' if len(saved) > 5 else ''}")
    if buffers != [f"buffer_{i:03d}" for i in range(len(buffers))]:
        raise ModelFileError(path, "buffer entries must be buffer_000, buffer_001, ... "
                                   "without gaps")
    shape, dtype, info = entries["__config__"]
    if info.file_size > MAX_JSON_BYTES:
        raise ModelFileError(path, f"__config__ takes {info.file_size:,} bytes; at most "
                                   f"{MAX_JSON_BYTES:,} are accepted")
    config = _parse_json_entry(path, _read_entries(archive, ["__config__"])["__config__"],
                               "__config__")
    if config.get("format") != FORMAT:
        raise ModelFileError(path, f"has format {config.get('format')!r}, expected {FORMAT!r}")
    version = config.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"has version {version!r}; expected a positive integer")
    if version > VERSION:
        raise ModelFileError(path, f"has version {version}; this fastconv reads up to "
                                   f"{VERSION} (upgrade fastconv)")
    if "architecture" not in config:
        raise ModelFileError(path, "__config__ has no \"architecture\" entry")
    _check_architecture(path, config["architecture"])
    metadata = config.get("metadata", {})
    _check_metadata(path, metadata)

    # The declared architecture against the stored arrays, from their headers alone.
    for key in saved + buffers:
        if entries[key][1] not in (np.float32, np.float64):
            raise ModelFileError(path, f"{key} has dtype {entries[key][1]}; parameters and "
                                       f"buffers are float32 or float64")
    dtypes = {entries[k][1] for k in saved}
    if len(dtypes) > 1:
        raise ModelFileError(path, f"parameters must all be float32 or all float64; got "
                                   f"{', '.join(sorted(map(str, dtypes)))}")
    params_needed, buffers_needed, other = _implied_arrays(path, config["architecture"])
    for kind, keys, needed in (("parameter", saved, params_needed),
                               ("buffer", buffers, buffers_needed)):
        if len(keys) != len(needed):
            raise ModelFileError(path, f"holds {len(keys)} {kind} arrays; the architecture "
                                       f"needs {len(needed)}")
        for key, (label, shape) in zip(keys, needed):
            if entries[key][0] != shape:
                raise ModelFileError(path, f"{key} has shape {entries[key][0]}; {label} "
                                           f"needs {shape}")
    itemsize = dtypes.copy().pop().itemsize if dtypes else 8
    # Building allocates each parameter and its gradient, the buffers and any other array.
    cost = sum(entries[k][2].file_size for k in saved) * 2 + 8 * other + sum(
        entries[k][2].file_size for k in buffers)
    budget = memory_budget(path)
    if cost > budget or other * itemsize > budget:
        raise ModelFileError(path, f"the architecture needs {cost:,} bytes, more than the "
                                   f"{budget:,} bytes allowed for this file")

    arrays = _read_entries(archive, saved + buffers)
    for key in saved + buffers:
        problem = _entry_problem(key, arrays[key])
        if problem:
            raise ModelFileError(path, problem)
    # Files written before layers recorded their dtype are rebuilt in the parameters'
    # dtype: building in the default and converting would round a float64 kernel to float32.
    architecture = _with_dtype(config["architecture"], dtypes.copy().pop() if dtypes else None)
    try:
        model = module_from_config(architecture)
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        raise ModelFileError(path, f"architecture cannot be built "
                                   f"({type(exc).__name__}: {exc})") from None
    slots = list(model._param_slots())
    if len(saved) != len(slots):
        raise ModelFileError(path, f"holds {len(saved)} parameter arrays; the architecture "
                                   f"needs {len(slots)}")
    if dtypes:
        model.astype(dtypes.pop())
    for (m, name), key in zip(slots, saved):
        value, current = arrays[key], getattr(m, name)
        if value.shape != current.shape:
            raise ModelFileError(path, f"{key} has shape {value.shape}; "
                                       f"{type(m).__name__}.{name} needs {current.shape}")
        current[...] = value
    try:
        model.load_buffers([arrays[k] for k in buffers], "buffers")
    except ValueError as exc:
        raise ModelFileError(path, str(exc)) from None
    model.eval()
    if input_shape is not None:
        _check_io(path, model, tuple(input_shape), n_outputs)
    return model, metadata


def _leaves(module):
    return [m for m in module.modules() if not m.children()]


def _conv_output_bytes(layer, shape, itemsize):
    """Bytes of a Conv2d's output for an input of ``shape`` (N, C, H, W), or 0 when it
    cannot take it (the layer's own checks then say why)."""
    if len(shape) != 4:
        return 0
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    oh = (shape[2] + 2 * ph - kh) // sh + 1
    ow = (shape[3] + 2 * pw - kw) // sw + 1
    return max(oh, 0) * max(ow, 0) * layer.out_channels * shape[0] * itemsize


def forward_one_sample(path, model, input_shape):
    """Run a loaded ``model`` once, layer by layer, on a zero sample of ``input_shape``.

    A convolution whose padding would make the sample's output exceed
    :func:`memory_budget` of the model file is refused before it runs, so that a small file
    cannot make this check allocate gigabytes.

    Parameters
    ----------
    path : str or os.PathLike
        The model file the model came from (its budget, and the messages).
    model : fastconv.nn.Module
    input_shape : tuple of int
        Shape of one sample, e.g. ``(1, 32, 32)``.

    Returns
    -------
    ndarray
        The model's output for a batch of one.

    Raises
    ------
    ModelFileError
        A layer would exceed the budget.
    TypeError, ValueError
        A layer cannot take its input (the layer's own message).
    """
    from .nn.conv import Conv2d

    path = os.fspath(path)
    budget = memory_budget(path)
    x = np.zeros((1,) + tuple(input_shape), dtype=model.dtype or np.float32)
    for i, layer in enumerate(_leaves(model)):
        if isinstance(layer, Conv2d):
            size = _conv_output_bytes(layer, x.shape, x.dtype.itemsize)
            if size > budget:
                raise ModelFileError(path, f"layer {i} (Conv2d, padding {layer.padding}) "
                                           f"would produce {size:,} bytes for one input of "
                                           f"shape {tuple(input_shape)}, more than the "
                                           f"{budget:,} bytes allowed for this file")
        x = layer.forward(x)
    return x


def _check_io(path, model, input_shape, n_outputs):
    """Run ``model`` once on zeros shaped like one sample; check its output count."""
    try:
        y = forward_one_sample(path, model, input_shape)
    except ModelFileError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"the model does not accept inputs of shape "
                                   f"{input_shape} ({exc})") from None
    if n_outputs is not None and (y.ndim != 2 or y.shape[1] != n_outputs):
        got = y.shape[1] if y.ndim == 2 else f"shape {y.shape[1:]}"
        raise ModelFileError(path, f"the model has {got} outputs per sample; "
                                   f"{n_outputs} are needed (one per class)")


# -- data sets and ensembles ----------------------------------------------------------------
# What a model file written before models recorded their data set was trained on.
_MNIST_DATASET = {"name": "mnist", "input_shape": [1, 32, 32], "n_classes": 10, "padding": 2}


def dataset_record(metadata, path):
    """The data set a model was trained on, from its metadata (``metadata["dataset"]``).

    Parameters
    ----------
    metadata : dict
        As returned by :func:`load_model`.
    path : str or os.PathLike
        The model file, for error messages.

    Returns
    -------
    dict
        ``name`` (one of :data:`fastconv.datasets.DATASETS`), ``input_shape`` [C, H, W],
        ``n_classes`` and ``padding``; MNIST's for a file written before models recorded
        their data set.

    Raises
    ------
    ModelFileError
        The record is malformed.
    """
    from .datasets.catalog import DATASETS

    info = metadata.get("dataset")
    if info is None:
        return dict(_MNIST_DATASET)
    shape = info.get("input_shape") if isinstance(info, dict) else None
    if not (isinstance(info, dict) and info.get("name") in DATASETS
            and isinstance(shape, list) and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
            and isinstance(info.get("n_classes"), int) and info.get("padding") in (0, 2)):
        raise ModelFileError(path, f"metadata.dataset must record name (one of "
                                   f"{', '.join(DATASETS)}), input_shape [C, H, W], n_classes "
                                   f"and padding; got {info!r}"[:300])
    return info


def _describe(record):
    return (f"{record['name']}, inputs {tuple(record['input_shape'])}, "
            f"{record['n_classes']} classes")


def load_ensemble(paths):
    """Load model files as one :class:`fastconv.nn.Ensemble`, each member checked.

    Each file is read as :func:`load_model` reads it and run once on a zero sample of the
    input shape its metadata records. The members must have been trained on one data set
    (their ``metadata["dataset"]`` records agree: name, input shape, classes, padding, and
    anything else recorded) and end in the same head; their input normalizations may differ.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        One or more model files written by :func:`save_model` (``fastconv train``'s
        ``model.npz``).

    Returns
    -------
    ensemble : fastconv.nn.Ensemble
        In evaluation mode; ``ensemble[i]`` is the model of ``paths[i]``.
    metadata : list of dict
        Each member's metadata, as :func:`load_model` returns it: what preparing that
        member's inputs needs (``normalization``, ``local_contrast``, ``dataset``), and its
        ``loss``. Pass the ensemble one input per member, each prepared with its member's
        metadata and in its dtype (``ensemble[i].dtype``); see the user guide's "Ensembles".

    Raises
    ------
    ModelFileError
        A file is missing, damaged, or does not fit the data set it records.
    EnsembleError
        Two files were trained on different data sets or end in different heads.
    ValueError
        ``paths`` is empty.

    Examples
    --------
    >>> ensemble, metadata = load_ensemble(["run1/model.npz", "run2/model.npz"])  # doctest: +SKIP
    >>> log_probs = ensemble.forward([x1, x2])    # x_i prepared as metadata[i] says  # doctest: +SKIP
    """
    from .nn.ensemble import Ensemble, _head

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("load_ensemble: paths is empty; give at least one model file")
    models, metadata, records = [], [], []
    for path in paths:
        model, meta = load_model(path)
        record = dataset_record(meta, path)
        _check_io(path, model, tuple(record["input_shape"]), record["n_classes"])
        if records and record != records[0]:
            raise EnsembleError(
                [paths[0], path], f"{paths[0]} and {path} were trained on different data sets "
                f"({_describe(records[0])}; {_describe(record)}); an ensemble's members "
                f"vote on the same classes: pass model files trained on one data set")
        if models and _head(model) != _head(models[0]):
            raise EnsembleError(
                [paths[0], path], f"{paths[0]} ends in {_head(models[0])}, {path} in "
                f"{_head(model)}; their outputs cannot be averaged: pass model files "
                f"trained with one --loss")
        models.append(model)
        metadata.append(meta)
        records.append(record)
    return Ensemble(models).eval(), metadata
