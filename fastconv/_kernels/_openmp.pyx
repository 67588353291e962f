"""Python view of the OpenMP runtime the kernels were built with."""
from ._openmp cimport fc_openmp_enabled, fc_omp_max_threads


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return bool(fc_openmp_enabled())


def omp_max_threads():
    """``omp_get_max_threads()``: honours ``OMP_NUM_THREADS``; 1 without OpenMP."""
    return fc_omp_max_threads()


def debug_build():
    """Return True for a ``FASTCONV_DEBUG=1`` build (Cython bounds checks on)."""
    IF FASTCONV_DEBUG:
        return True
    ELSE:
        return False
