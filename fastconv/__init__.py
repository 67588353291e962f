"""fastconv: a Cython-accelerated CPU toolkit for training and studying small CNNs.

Subpackages: :mod:`fastconv.functional` (validated kernels), :mod:`fastconv.nn` (layers,
losses, the homework's models), :mod:`fastconv.optim` (SGD, ASGD, CG, L-BFGS),
:mod:`fastconv.datasets` (MNIST and other small image sets), and :class:`fastconv.Trainer`;
:func:`fastconv.load_ensemble` loads several model files as one :class:`fastconv.nn.Ensemble`.
"""
from ._version import __version__
from ._threads import get_num_threads, get_thread_setting, openmp_enabled, set_num_threads
from . import functional, nn, optim, datasets
from .serialization import load_ensemble, load_model, save_model
from .train import Trainer, TrainingDiverged

__all__ = ["__version__", "functional", "nn", "optim", "datasets", "Trainer", "TrainingDiverged",
           "load_model", "load_ensemble", "save_model", "get_num_threads", "get_thread_setting",
           "set_num_threads", "openmp_enabled"]
