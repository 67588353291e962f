"""Validated, dtype-generic entry points to fastconv's Cython kernels.

Every function checks its arguments (ndim, shapes, dtype, contiguity) before a kernel runs
without the GIL, and raises ``TypeError`` or ``ValueError`` naming the argument, the expected
and the actual shape or dtype. Arrays are NCHW, float32 or float64; all float arguments of one
call share a dtype.
"""
import importlib

# Assembled from one private module per kernel family.
_MODULES = ["_conv", "_linear", "_pool", "_activation", "_loss", "_dropout",
            "_rotate", "_normalization"]

__all__ = []
for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    for _sym in _mod.__all__:
        globals()[_sym] = getattr(_mod, _sym)
    __all__ += list(_mod.__all__)
del importlib, _name
