# OpenMP shims usable from nogil code whether or not the build has OpenMP.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fc_openmp_enabled(void) { return 1; }
    static int fc_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fc_omp_thread_num(void) { return omp_get_thread_num(); }
    #else
    static int fc_openmp_enabled(void) { return 0; }
    static int fc_omp_max_threads(void) { return 1; }
    static int fc_omp_thread_num(void) { return 0; }
    #endif
    """
    int fc_openmp_enabled() noexcept nogil
    int fc_omp_max_threads() noexcept nogil
    int fc_omp_thread_num() noexcept nogil
