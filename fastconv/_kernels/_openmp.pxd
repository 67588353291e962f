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


cdef enum:
    # The one serial threshold of the kernels: below this many elements of work a call runs
    # on one thread, because forking a team costs more than it saves. Kernels whose element
    # costs a whole window of loads (pooling, batch normalization's two passes) go parallel
    # from half of it.
    SERIAL_BELOW = 1 << 15
    # Elementwise and row-wise kernels cut their work into chunks of this many elements,
    # whatever the thread count, so that partial sums (and results) never depend on it.
    # Small enough for 64 chunks in a convolution's output at batch 32 (204,800 elements in
    # the homework's second layer), large enough that a chunk's loop overhead is noise.
    CHUNK = 1 << 11
