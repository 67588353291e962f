"""One place that decides how many threads fastconv's kernels use.

fastconv runs exactly one threading runtime at a time. Its kernels parallelize with OpenMP and
call SciPy's BLAS from inside their parallel regions, so SciPy's OpenBLAS is pinned to one
thread: an OpenBLAS thread pool spinning beside OpenMP threads on the same cores can slow a
training step down by more than an order of magnitude (see the project's performance notes).
NumPy's own BLAS is left alone.
"""
import os
import threading

from ._kernels._openmp import omp_max_threads, openmp_enabled

__all__ = ["set_num_threads", "get_num_threads", "get_thread_setting", "effective_n_threads",
           "openmp_enabled", "max_threads"]

# Thread counts above this many per usable core are refused: they buy nothing on a CPU
# kernel, and libgomp crashes (segfault) when it cannot create a team of, say, 100000.
THREADS_PER_CORE_CAP = 64

_lock = threading.Lock()
_num_threads = None       # None: the default (OMP_NUM_THREADS if set, else "auto")
_blas_pinned = False
_resolved = None          # cache of effective_n_threads(None): every kernel call asks for it
_auto = None              # FreeCores when set_num_threads("auto")
# Fork safety. GNU OpenMP's thread pool does not survive fork(): a child whose parent has
# run a parallel region blocks forever in its first one. A team of one thread never touches
# the pool (tested: libgomp runs num_threads(1) regions in such a child), so a child forked
# after the parent may have started a team runs every kernel on one thread; results are the
# same bits on any thread count.
_teams_started = False    # this process may have run a parallel region of > 1 thread
_forked_serial = False    # forked after that: every kernel runs serially


def _usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def max_threads():
    """The largest thread count fastconv accepts: 64 x the usable cores."""
    return THREADS_PER_CORE_CAP * _usable_cores()


def _check_count(fn, n):
    """``n`` as an int in [1, max_threads()], else TypeError/ValueError naming ``fn``."""
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"{fn}: n_threads must be a positive int or None; "
                        f"got {type(n).__name__}")
    n = int(n)
    cap = max_threads()
    if not 1 <= n <= cap:
        raise ValueError(f"{fn}: n_threads must be in [1, {cap}] ({THREADS_PER_CORE_CAP} x "
                         f"{_usable_cores()} usable cores); got {n}")
    return n


def _env_threads():
    """The count OMP_NUM_THREADS asks for (at most the usable cores), or None when unset."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        n = int(text.split(",")[0])     # it may be a list, "4,2": the outermost level
    except ValueError:
        n = omp_max_threads()           # what the OpenMP runtime made of it
    return max(1, min(n, _usable_cores()))


def _parallel_ok():
    """Whether kernels may run more than one thread: built with OpenMP, and not in a child
    forked after its parent started OpenMP threads."""
    return openmp_enabled() and not _forked_serial


def _usable(n):
    """``n`` threads, or 1 where only one may run; records that a team may start."""
    global _teams_started
    if n > 1:
        if not _parallel_ok():
            return 1
        _teams_started = True
    return n


def _start_auto():
    """The free-cores monitor of the "auto" setting (started once, under _lock)."""
    global _auto
    if _auto is None:
        _auto = _AutoThreads(_usable_cores() if _parallel_ok() else 1)
    return _auto


def _pin_scipy_blas():
    """Limit the BLAS that ``scipy.linalg.cython_blas`` calls into to one thread."""
    global _blas_pinned
    if _blas_pinned:
        return
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS so threadpoolctl can see it)
    from threadpoolctl import ThreadpoolController
    import scipy

    controller = ThreadpoolController()
    scipy_dir = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    ours = [lib.filepath for lib in controller.lib_controllers
            if lib.user_api == "blas" and os.path.basename(
                os.path.dirname(lib.filepath)).startswith("scipy")
            and os.path.dirname(os.path.dirname(lib.filepath)) == scipy_dir]
    # A SciPy linked against a system BLAS has no bundled copy: pin every BLAS then,
    # since we cannot tell which one cython_blas resolves to.
    selection = (controller.select(filepath=ours) if ours
                 else controller.select(user_api="blas"))
    selection.limit(limits=1)
    _blas_pinned = True


def effective_n_threads(n_threads=None):
    """Resolve a user's ``n_threads`` argument to a positive thread count.

    Parameters
    ----------
    n_threads : int or None
        None uses the global setting (:func:`set_num_threads`; by default ``"auto"``, or
        ``OMP_NUM_THREADS`` when that is set). A negative value counts back from the usable
        cores: -1 means all, -2 all but one.

    Returns
    -------
    int
        At least 1; 1 when fastconv was built without OpenMP, and in a process forked
        after its parent ran kernels on several threads (see :func:`set_num_threads`).
    """
    global _resolved
    if n_threads is None:
        if _resolved is None:
            _pin_scipy_blas()
            with _lock:
                n = _num_threads if _num_threads is not None else _env_threads()
                if n is None or n == "auto":
                    n = _start_auto().free
                _resolved = _usable(n)
        return _resolved
    _pin_scipy_blas()
    if isinstance(n_threads, bool) or not hasattr(n_threads, "__index__"):
        raise TypeError(f"n_threads must be an int or None; got {type(n_threads).__name__}")
    n = int(n_threads)
    if n == 0:
        raise ValueError("n_threads must be a non-zero integer; got 0")
    if n < 0:
        n = max(1, _usable_cores() + 1 + n)
    return _usable(_check_count("effective_n_threads", n))


class _AutoThreads:
    """A daemon thread that re-measures the free cores every half second.

    Kernels read the thread count from the module's cache (``_resolved``) as always, so
    ``"auto"`` costs them nothing per call; this thread replaces the cached value when the
    number of free cores changes.
    """

    def __init__(self, cores, window=0.5):
        from ._cpuload import FreeCores

        # The thread paces the readings: the monitor measures on every call (window 0).
        self.monitor = FreeCores(cores=cores, window=0.0)
        self.free = cores
        self.window = window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastconv-auto-threads",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        global _resolved
        while not self._stop.wait(self.window):
            free = self.monitor.measure()
            if free != self.free:
                with _lock:
                    if _auto is self:
                        self.free = free
                        _resolved = _usable(free)

    def stop(self):
        self._stop.set()


def set_num_threads(n):
    """Set the number of OpenMP threads fastconv's kernels use.

    SciPy's BLAS is not among them: it stays pinned to one thread whatever ``n`` is, because
    fastconv splits GEMMs between its own OpenMP threads.

    Parameters
    ----------
    n : int, "auto" or None
        Thread count in ``[1, max_threads()]`` (64 x the usable cores); ``"auto"``: the
        usable cores that other processes leave free, re-measured every half second
        (:mod:`fastconv._cpuload`), so that a busy neighbour does not make every parallel
        region wait for a preempted thread (the count follows the machine's load; results
        are the same bits for any count); or None to return to the default: ``"auto"``,
        or ``OMP_NUM_THREADS`` when that is set.

    Notes
    -----
    Fork: GNU OpenMP's thread pool does not survive ``fork()``, so a process forked (with
    :func:`os.fork`, or a ``multiprocessing`` pool with the ``"fork"`` start method) after
    its parent ran kernels on several threads runs every kernel on one thread, whatever the
    setting; it would otherwise block forever in its first parallel region. Results are the
    same bits. A child forked before any multi-threaded kernel ran, or started with the
    ``"spawn"`` or ``"forkserver"`` method, uses threads as usual. Only forks made through
    Python (``os.fork``) are seen; a fork from C code bypasses the hook.

    Raises
    ------
    TypeError, ValueError
        ``n`` is not an int or ``"auto"``, or outside ``[1, max_threads()]``.
    """
    global _num_threads, _resolved, _auto
    if isinstance(n, str):
        if n != "auto":
            raise TypeError(f"set_num_threads: n must be a positive int, 'auto' or None; "
                            f"got {n!r}")
        with _lock:
            _start_auto()
            _num_threads, _resolved = "auto", None
        _pin_scipy_blas()
        return
    if n is not None:
        n = _check_count("set_num_threads", n)
    with _lock:
        _num_threads = n
        _resolved = None
        if _auto is not None and (n is not None or _env_threads() is not None):
            _auto.stop()
            _auto = None
    _pin_scipy_blas()


def get_num_threads():
    """Return the number of threads fastconv's kernels use now (under ``"auto"``, the
    free cores at the last reading)."""
    return effective_n_threads(None)


def get_thread_setting():
    """Return the thread setting: an int, or ``"auto"`` (the default unless
    ``OMP_NUM_THREADS`` is set)."""
    with _lock:
        if _num_threads is not None:
            return _num_threads
        env = _env_threads()
        return "auto" if env is None else env


def _after_fork_in_child():
    # A forked child has no monitor thread (only the forking thread survives a fork): drop
    # the parent's so that "auto" starts its own on the next call.
    global _auto, _resolved, _lock, _forked_serial
    _lock = threading.Lock()
    if _teams_started:
        _forked_serial = True
        _resolved = None
    if _auto is not None:
        _auto = None
        _resolved = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Pin at import, not at the first kernel call: code that calls a compiled kernel directly
# must never find SciPy's BLAS multi-threaded inside an OpenMP region (measured here: a
# 64->64 convolution at batch 1 on 2 threads took 25 ms instead of 0.18 ms).
_pin_scipy_blas()
