"""fastconv: a Cython-accelerated CPU toolkit for training and studying small CNNs."""
from ._threads import get_num_threads, openmp_enabled, set_num_threads
from . import functional

__version__ = "0.1.0"
__all__ = ["functional", "get_num_threads", "set_num_threads", "openmp_enabled"]
