"""Validated, dtype-generic entry points to fastconv's Cython kernels.

Every function checks its arguments (ndim, shapes, dtype, contiguity) before a kernel runs
without the GIL, and raises ``TypeError`` or ``ValueError`` naming the argument, the expected
and the actual shape or dtype. Arrays are NCHW, float32 or float64; all float arguments of one
call share a dtype.
"""
from . import (_activation, _batchnorm, _conv, _dropout, _linear, _loss, _normalization,
               _pool, _rotate)
from ._activation import *      # noqa: F401,F403
from ._batchnorm import *       # noqa: F401,F403
from ._conv import *            # noqa: F401,F403
from ._dropout import *         # noqa: F401,F403
from ._linear import *          # noqa: F401,F403
from ._loss import *            # noqa: F401,F403
from ._normalization import *   # noqa: F401,F403
from ._pool import *            # noqa: F401,F403
from ._rotate import *          # noqa: F401,F403

# One private module per kernel family; each lists its public functions in __all__.
__all__ = [name for module in (_conv, _linear, _pool, _activation, _loss, _dropout, _rotate,
                               _normalization, _batchnorm)
           for name in module.__all__]
