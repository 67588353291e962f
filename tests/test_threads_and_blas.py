import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv._kernels._blas import gemm_memview
from fastconv._threads import effective_n_threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_row_major_matches_numpy(dtype, trans_a, trans_b, rng):
    m, n, k = 7, 5, 3
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = 2.0 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 0.5 * c
    got = gemm_memview(trans_a, trans_b, 2.0, a, b, 0.5, c.copy())
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_gemm_empty_inner_dimension_scales_c():
    a = np.empty((3, 0))
    b = np.empty((0, 2))
    c = np.ones((3, 2))
    np.testing.assert_array_equal(gemm_memview(False, False, 1.0, a, b, 0.0, c), 0.0)


def test_set_and_get_num_threads():
    # The setting, not the count: under the default "auto" the count follows the load.
    old = fastconv.get_thread_setting()
    try:
        fastconv.set_num_threads(1)
        assert fastconv.get_num_threads() == 1
        assert effective_n_threads(None) == 1
        if fastconv.openmp_enabled():
            fastconv.set_num_threads(3)
            assert fastconv.get_num_threads() == 3
    finally:
        fastconv.set_num_threads(old)         # back to what this test found
    assert fastconv.get_thread_setting() == old


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError),
                                      (1.5, TypeError), (True, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects_bad_values(bad, exc):
    with pytest.raises(exc, match="set_num_threads"):
        fastconv.set_num_threads(bad)


def test_effective_n_threads_negative_counts_back():
    assert effective_n_threads(-1) >= 1
    with pytest.raises(ValueError, match="non-zero"):
        effective_n_threads(0)


def test_scipy_blas_pinned_to_one_thread():
    fastconv.get_num_threads()
    scipy_libs = [i for i in threadpool_info()
                  if i["user_api"] == "blas" and "scipy.libs" in i["filepath"]]
    if not scipy_libs:
        pytest.skip("SciPy's BLAS is not a bundled copy here")
    assert all(i["num_threads"] == 1 for i in scipy_libs)


def test_importing_fastconv_alone_pins_scipy_blas():
    import subprocess
    import sys
    code = ("import fastconv\n"
            "from threadpoolctl import threadpool_info\n"
            "libs = [i for i in threadpool_info() if i['user_api'] == 'blas'"
            " and 'scipy.libs' in i['filepath']]\n"
            "print(len(libs), all(i['num_threads'] == 1 for i in libs))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    if out[0] == "0":
        pytest.skip("SciPy's BLAS is not a bundled copy here")
    assert out[1] == "True"
