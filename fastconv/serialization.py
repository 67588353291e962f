"""Model files and atomic writes.

A model file is a NumPy ``.npz`` archive (loaded with ``allow_pickle=False``, so it can hold
no code) with:

- ``__config__``: a 0-d unicode array holding JSON: ``{"format": "fastconv-model",
  "version": 1, "architecture": <Module.config()>, "metadata": {...}}``. Metadata carries,
  for example, the normalization mean/std of the training set and the loss name.
- ``param_000``, ``param_001``, ...: the parameter arrays in :meth:`Module.params` order.
- ``buffer_000``, ...: non-parameter state (e.g. BatchNorm's running statistics) in
  :meth:`Module.buffers` order; absent when the model has none.
"""
import json
import os
import tempfile

import numpy as np

from .nn.module import module_from_config

__all__ = ["save_model", "load_model", "atomic_write_bytes", "atomic_savez", "atomic_write_text"]

def _read_umask():
    # os.umask can only be read by setting it; do it once, at import, not per write.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
FORMAT = "fastconv-model"
VERSION = 1


def _atomic(path, write):
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, then rename.

    A reader never sees a half-written file, and an interrupted write leaves only a stray
    ``.tmp`` file that the next write replaces.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
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
    _atomic(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path, **arrays):
    """``np.savez`` to ``path`` atomically (``path`` is used exactly, no suffix added)."""
    _atomic(path, lambda f: np.savez(f, **arrays))


def _json_array(obj):
    return np.array(json.dumps(obj, sort_keys=True))


def save_model(path, model, metadata=None):
    """Save ``model``'s architecture, parameters and ``metadata`` (JSON-able) to ``path``."""
    config = {"format": FORMAT, "version": VERSION, "architecture": model.config(),
              "metadata": metadata or {}}
    arrays = {f"param_{i:03d}": np.asarray(p) for i, p in enumerate(model.params())}
    arrays.update({f"buffer_{i:03d}": np.asarray(b) for i, b in enumerate(model.buffers())})
    atomic_savez(path, __config__=_json_array(config), **arrays)


def load_model(path):
    """Load a model saved by :func:`save_model`.

    Returns
    -------
    model : fastconv.nn.Module
        In evaluation mode, parameters in the saved dtype.
    metadata : dict
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"load_model: {path} is not a readable fastconv model file ({exc})") \
            from None
    with archive:
        if "__config__" not in archive.files:
            raise ValueError(f"load_model: {path} has no __config__ entry; not a fastconv model")
        config = json.loads(str(archive["__config__"]))
        if config.get("format") != FORMAT:
            raise ValueError(f"load_model: {path} has format {config.get('format')!r}, "
                             f"expected {FORMAT!r}")
        if config.get("version", 0) > VERSION:
            raise ValueError(f"load_model: {path} has version {config['version']}; this "
                             f"fastconv reads up to {VERSION}")
        model = module_from_config(config["architecture"])
        slots = list(model._param_slots())
        saved = sorted(k for k in archive.files if k.startswith("param_"))
        if len(saved) != len(slots):
            raise ValueError(f"load_model: {path} holds {len(saved)} parameter arrays; the "
                             f"architecture needs {len(slots)}")
        dtype = archive[saved[0]].dtype if saved else None
        if dtype is not None:
            model.astype(dtype)
        for (m, name), key in zip(slots, saved):
            value = archive[key]
            current = getattr(m, name)
            if value.shape != current.shape:
                raise ValueError(f"load_model: {path}: {key} has shape {value.shape}; "
                                 f"{type(m).__name__}.{name} needs {current.shape}")
            current[...] = value
        buffers = sorted(k for k in archive.files if k.startswith("buffer_"))
        model.load_buffers([archive[k] for k in buffers], f"load_model: {path}")
    return model.eval(), config.get("metadata", {})
