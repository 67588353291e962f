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


cdef extern from *:
    """
    #ifndef FASTCONV_ISA_VARIANTS
    #define FASTCONV_ISA_VARIANTS ""
    #endif
    static const char* fc_isa_variants(void) { return FASTCONV_ISA_VARIANTS; }
    static int fc_cpu_supports(int level) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        if (level == 4) return __builtin_cpu_supports("x86-64-v4") != 0;
        if (level == 3) return __builtin_cpu_supports("x86-64-v3") != 0;
    #endif
        (void)level;
        return 0;
    }
    """
    const char* fc_isa_variants() noexcept nogil
    int fc_cpu_supports(int level) noexcept nogil


def isa_variants():
    """ISA levels this build compiled the hot kernel modules for as well, best first: e.g.
    ``("v4", "v3")`` for a portable x86-64 build, ``()`` for a native or debug build."""
    text = fc_isa_variants().decode()
    return tuple(v for v in text.split(",") if v)


def cpu_supports(level):
    """Whether the running CPU (and OS) supports the ISA level ``"v3"`` (x86-64-v3: AVX2,
    FMA) or ``"v4"`` (x86-64-v4: AVX-512)."""
    if level not in ("v3", "v4"):
        raise ValueError(f"cpu_supports: level must be 'v3' or 'v4'; got {level!r}")
    return bool(fc_cpu_supports(int(level[1])))
