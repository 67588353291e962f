"""The flat-vector kernels behind SGD's update and zero_grad."""
import numpy as np
import pytest

from fastconv._kernels import _vector


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 1000, (1 << 16) + 7])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_axpy_and_zero(dtype, n, n_threads, rng):
    x = rng.standard_normal(n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    expected = y + dtype(-0.25) * x
    _vector.axpy(-0.25, x, y, n_threads)
    tol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    _vector.zero(y, n_threads)
    assert not y.any()


def test_axpy_is_the_same_for_any_thread_count(rng):
    x = rng.standard_normal(300001).astype(np.float32)
    y0 = rng.standard_normal(300001).astype(np.float32)
    results = []
    for t in (1, 2, 4):
        y = y0.copy()
        _vector.axpy(1e-3, x, y, t)
        results.append(y)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
