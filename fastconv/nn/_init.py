"""Parameter initialization shared by the layers with weights."""
import numpy as np

from .._validation import check_dtype as _check_dtype


def as_generator(rng):
    """Accept None (fresh entropy), an int seed or a Generator; return a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator; "
                    f"got {type(rng).__name__}")


def torch7_uniform(rng, shape, fan_in, dtype):
    """Torch7's default reset: U(-1/sqrt(fan_in), +1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def check_dtype(dtype):
    """A layer's dtype argument (see fastconv._validation.check_dtype)."""
    return _check_dtype(dtype)
