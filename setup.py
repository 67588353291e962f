"""Build script for fastconv's Cython kernels.

Environment variables
---------------------
FASTCONV_NO_OPENMP=1
    Build without OpenMP (kernels run serially). The build also falls back to this,
    with a warning, when the compiler cannot compile and link an OpenMP program.
FASTCONV_PORTABLE=1
    Do not tune for the building machine (omit ``-march=native``). This is already the
    default for wheels (``python -m build``, ``pip wheel``, ``pip install .``), which must
    run on any CPU of their platform tag; in-place and editable builds
    (``pip install -e .``, ``setup.py build_ext --inplace``) tune for the building CPU.
FASTCONV_NATIVE=1
    Tune a wheel for the building machine anyway (``-march=native``): for a wheel that is
    installed only where it was built. Ignored when FASTCONV_PORTABLE=1.
FASTCONV_DEBUG=1
    Debug build: Cython bounds checks, wraparound and initialization checks on, ``-O1 -g``.
FASTCONV_BUILD_JOBS=N
    Translate and compile N modules at a time (default: one per CPU).
FASTCONV_BUILD_ONLY=name[,name...]
    Developer convenience: build only the named kernel modules (e.g. ``_conv2d``).

A portable build on x86-64 also compiles the hot kernel modules once more per ISA level
(``x86-64-v3``: AVX2 and FMA; ``x86-64-v4``: AVX-512), as ``<module>__v3`` and
``<module>__v4`` from generated copies of the same source; ``fastconv._kernels`` picks the
best one the running CPU supports at import (``FASTCONV_ISA=generic|v3|v4`` forces one).
"""
import glob
import os
import platform
import re
import shutil
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


DEBUG = _flag("FASTCONV_DEBUG")
PORTABLE = _flag("FASTCONV_PORTABLE")
NATIVE = _flag("FASTCONV_NATIVE")
NO_OPENMP = _flag("FASTCONV_NO_OPENMP")
BUILD_JOBS = int(os.environ.get("FASTCONV_BUILD_JOBS") or 0) or os.cpu_count() or 1
# Whether this build may not tune for the building CPU (see _portable); known from the
# command line already, since the per-ISA extensions are declared before setup() runs.
PORTABLE_BUILD = PORTABLE or ("bdist_wheel" in sys.argv and not NATIVE)
# Hot modules that a portable x86-64 build compiles once more per ISA level (see the
# module docstring and fastconv/_kernels/__init__.py): where the compiler's vectorized loops
# are (im2col/col2im, activations, pooling, normalization, rotation, losses, vector updates).
# The GEMMs come from the BLAS, which dispatches on the CPU itself.
ISA_MODULES = ("_conv2d", "_winograd", "_activation", "_pool", "_batchnorm", "_normalization",
               "_rotate", "_loss", "_vector")
ISA_LEVELS = (("v4", "x86-64-v4"), ("v3", "x86-64-v3"))
ISA_VARIANTS = PORTABLE_BUILD and not DEBUG and platform.machine().lower() in (
    "x86_64", "amd64")
MODE = ("debug" if DEBUG else "release") + ("-portable" if PORTABLE_BUILD else "")
# Generated C differs between debug and release builds (bounds checks are Cython directives),
# so each mode keeps its own C files; switching modes (debug, release, portable) forces a
# rebuild of the extensions, which would otherwise look up to date next to the other mode's
# newer .so files (and the ISA list compiled into _openmp would go stale).
_STAMP = os.path.join("build", "fastconv-build-mode")


def _mode_changed():
    try:
        with open(_STAMP) as f:
            return f.read().strip() != MODE
    except OSError:
        return True


MODE_CHANGED = _mode_changed()


def _compiles(compiler, flags, source, link=True):
    """Return True when ``source`` compiles (and links) with ``flags``."""
    tmp = tempfile.mkdtemp(prefix="fastconv-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(textwrap.dedent(source))
        with open(os.devnull, "w") as devnull:
            old_out, old_err = os.dup(1), os.dup(2)
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                if link:
                    compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                             extra_postargs=flags)
            finally:
                os.dup2(old_out, 1)
                os.dup2(old_err, 2)
                os.close(old_out)
                os.close(old_err)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _portable(commands):
    """True unless this build may tune for the building CPU.

    A wheel (the ``bdist_wheel`` command: ``python -m build``, ``pip wheel``, ``pip install
    .``) is tagged for a whole platform, e.g. ``linux_x86_64``, so it must not use
    instructions that only the building CPU has; an in-place or editable build runs where it
    was built.
    """
    if PORTABLE:
        return True
    return "bdist_wheel" in commands and not NATIVE


class BuildExt(build_ext):
    """build_ext that probes the compiler for OpenMP and ``-march=native``."""

    def finalize_options(self):
        super().finalize_options()
        # The extensions are independent: compile them side by side unless -j says otherwise
        # (FASTCONV_BUILD_JOBS=1 for a serial build on a shared machine).
        if self.parallel is None:
            self.parallel = BUILD_JOBS

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        portable = _portable(self.distribution.commands)
        compile_args, link_args = [], []
        if ctype == "msvc":
            compile_args += ["/O2"]
            openmp = ["/openmp"]
        else:
            compile_args += ["-O1", "-g"] if DEBUG else ["-O3"]
            # No -ffast-math: NaN and inf must propagate through the kernels.
            compile_args += ["-fno-math-errno", "-Wno-unused-function",
                             "-Wno-unreachable-code"]
            openmp = ["-fopenmp"]
            if not portable and _compiles(self.compiler, ["-march=native"],
                                          "int main(void){return 0;}\n"):
                compile_args.append("-march=native")
        use_openmp = False
        if NO_OPENMP:
            print("fastconv: FASTCONV_NO_OPENMP set; building without OpenMP")
        elif _compiles(self.compiler, openmp, """
                #include <omp.h>
                int main(void) {
                    int n = 0;
                    #pragma omp parallel reduction(+:n)
                    n += 1;
                    return omp_get_max_threads() > 0 ? 0 : n;
                }
                """):
            use_openmp = True
        else:
            warnings.warn(
                "fastconv: the C compiler cannot build OpenMP programs; the kernels will "
                "run on one thread. Install an OpenMP-capable compiler (gcc, or clang with "
                "libomp), or set FASTCONV_NO_OPENMP=1 to silence this warning.")
        levels = [(level, march) for level, march in ISA_LEVELS
                  if ctype != "msvc" and _compiles(self.compiler, ["-march=" + march],
                                                   "int main(void){return 0;}\n")]
        built = {level for level, _ in levels}
        # A level the compiler cannot target is left out, and so is its name from the list
        # compiled into _openmp (the dispatcher's source of truth).
        self.extensions = [ext for ext in self.extensions
                           if _isa_of(ext.name) in (None,) + tuple(built)]
        for ext in self.extensions:
            isa = _isa_of(ext.name)
            march = ["-march=" + dict(ISA_LEVELS)[isa]] if isa else []
            ext.extra_compile_args = compile_args + march + (openmp if use_openmp else [])
            ext.extra_link_args = link_args + (openmp if use_openmp else [])
            if ext.name.endswith("._openmp"):
                ext.define_macros = ext.define_macros + [
                    ("FASTCONV_ISA_VARIANTS",
                     '"' + ",".join(level for level, _ in levels if ISA_VARIANTS) + '"')]
        print("fastconv: compile flags", compile_args + (openmp if use_openmp else []))
        if ISA_VARIANTS:
            print("fastconv: per-ISA kernel modules for", ", ".join(
                march for _, march in levels) or "no level (the compiler targets none)")
        if MODE_CHANGED:
            self.force = True
        super().build_extensions()
        os.makedirs(os.path.dirname(_STAMP), exist_ok=True)
        with open(_STAMP, "w") as f:
            f.write(MODE)


def _isa_of(module):
    """The ISA level of a per-ISA kernel module (``fastconv._kernels._conv2d__v3``: "v3"),
    None for the others. By name: cythonize hands build_ext new Extension objects."""
    tail = module.rsplit(".", 1)[-1]
    return tail.rsplit("__", 1)[1] if "__" in tail.strip("_") else None


def _isa_copy(path, level):
    """The source of ``path``'s ISA-level twin, written beside it (git ignores these) only
    when its text changed, so that an incremental build recompiles it only then."""
    base, ext = os.path.splitext(path)
    target = f"{base}__{level}{ext}"
    with open(path, encoding="utf-8") as f:
        text = (f"# Generated by setup.py from {os.path.basename(path)} for the {level} "
                f"ISA level: edit that file, not this one.\n" + f.read())
    try:
        with open(target, encoding="utf-8") as f:
            if f.read() == text:
                return target
    except OSError:
        pass
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    return target


def _extensions():
    only = [s.strip() for s in os.environ.get("FASTCONV_BUILD_ONLY", "").split(",") if s.strip()]
    exts = []
    for path in sorted(glob.glob(os.path.join("fastconv", "_kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if "__" in name or (only and name not in only):
            continue
        sources = [(name, path, None)]
        if ISA_VARIANTS and name in ISA_MODULES:
            sources += [(f"{name}__{level}", _isa_copy(path, level), level)
                        for level, _ in ISA_LEVELS]
        for mod, src, _ in sources:
            exts.append(Extension(
                "fastconv._kernels." + mod, [src],
                # _kernels/ itself: C headers beside the .pyx (e.g. _conv2d_simd.h)
                include_dirs=[np.get_include(), os.path.join("fastconv", "_kernels")],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            ))
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": not DEBUG,
        "nonecheck": DEBUG,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives,
                     compile_time_env={"FASTCONV_DEBUG": DEBUG},
                     build_dir=os.path.join("build", "cython-" + MODE),
                     force="--force" in sys.argv, quiet=True, nthreads=BUILD_JOBS)


def _readme_for_index():
    """README.md for the package index page, where repository-relative links are dead.

    On GitHub the README's figures and links resolve against the repository; a package
    index shows the same text without the repository, so relative images and links become
    plain text naming the file (absolute ``http(s)`` links are kept).
    """
    with open("README.md", encoding="utf-8") as f:
        text = f.read()

    def image(m):
        return f"*(figure: {m.group(1)}, `{m.group(2)}` in the source repository)*"

    def link(m):
        return f"{m.group(1)} (`{m.group(2)}` in the source repository)"

    relative = r"(?!https?://|#|mailto:)([^)\s]+)"
    text = re.sub(r"!\[([^\]]*)\]\(" + relative + r"\)", image, text)
    return re.sub(r"(?<!!)\[([^\]]*)\]\(" + relative + r"\)", link, text)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt},
      long_description=_readme_for_index(), long_description_content_type="text/markdown")
