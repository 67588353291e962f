"""Parameter initialization shared by the layers with weights."""
import numpy as np


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
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64; got {dtype}")
    return dtype
