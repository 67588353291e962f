import os

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh, fixed-seed generator per test: tests never depend on run order."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mnist_dir():
    """Folder of the four real MNIST IDX files, from FASTCONV_DATA (set by .ci/run)."""
    path = os.environ.get("FASTCONV_DATA")
    if not path or not os.path.isdir(path):
        pytest.skip("FASTCONV_DATA is not set to the MNIST folder")
    return path


# Per-dtype tolerances for comparisons against float64 references.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}
