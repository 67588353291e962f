import os

import pytest

import fastconv
from fastconv._kernels._openmp import debug_build


@pytest.mark.skipif(not os.environ.get("FASTCONV_EXPECT_DEBUG"),
                    reason="only meaningful when CI runs the kernel tests on a debug build")
def test_kernels_under_test_are_the_debug_build():
    assert debug_build(), f"expected a FASTCONV_DEBUG=1 build, imported {fastconv.__file__}"
