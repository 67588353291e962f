"""Compiled kernels. Nothing here is public API: use :mod:`fastconv.functional`.

A portable build (a wheel) compiles the hot kernel modules for generic x86-64 and once more
per ISA level (``<module>__v3``: AVX2 and FMA; ``<module>__v4``: AVX-512). Importing this
package picks, once, the best level the CPU supports and installs that build under the
plain module name, so ``from fastconv._kernels import _conv2d`` gets it everywhere.
``FASTCONV_ISA=generic|v3|v4`` forces a level (a level that is not built or that the CPU
lacks is refused with a warning, and the best other one is used). Levels may round
differently (FMA), so the same seed gives the same bits on any thread count of one machine
and one level.
"""
import importlib
import os
import sys
import warnings

from ._openmp import cpu_supports, isa_variants

# The modules setup.py builds per ISA level (its ISA_MODULES).
_ISA_MODULES = ("_conv2d", "_winograd", "_activation", "_pool", "_batchnorm", "_normalization",
                "_rotate", "_loss", "_vector")


def _choose_level():
    built = isa_variants()
    usable = [level for level in built if cpu_supports(level)]
    forced = os.environ.get("FASTCONV_ISA", "").strip().lower()
    if not forced:
        return usable[0] if usable else "generic"
    if forced == "generic" or forced in usable:
        return forced
    why = ("not built (this build has " + (", ".join(built) or "generic code only") + ")"
           if forced not in built else "not supported by this CPU")
    warnings.warn(f"FASTCONV_ISA={forced!r}: level {why}; using "
                  f"{usable[0] if usable else 'generic'} instead (choose from generic, "
                  f"{', '.join(usable) or 'no other level'})", RuntimeWarning, stacklevel=2)
    return usable[0] if usable else "generic"


ISA_LEVEL = _choose_level()

if ISA_LEVEL != "generic":
    for _name in _ISA_MODULES:
        _module = importlib.import_module(f"{__name__}.{_name}__{ISA_LEVEL}")
        sys.modules[f"{__name__}.{_name}"] = _module
        globals()[_name] = _module
    del _name, _module
