"""The compiled fast-path check accepts exactly the arrays a kernel may be handed."""
import numpy as np
import pytest

from fastconv.nn._fastpath import ready

F32 = np.dtype(np.float32)


def test_accepts_the_exact_array():
    a = np.zeros((2, 3), np.float32)
    assert ready(a, (2, 3), F32)
    # Equal dtypes that are not the same object (a descr from a buffer) still match.
    b = np.frombuffer(a.tobytes(), dtype=np.dtype("<f4")).reshape(2, 3)
    assert ready(b, (2, 3), F32)


@pytest.mark.parametrize("case", ["shape", "ndim", "transposed", "strided", "dtype",
                                  "byteorder", "subclass", "list", "none"])
def test_refuses_anything_else(case):
    a = np.zeros((2, 3), np.float32)
    arg, shape = {
        "shape": (a, (3, 2)),
        "ndim": (a, (2, 3, 1)),
        "transposed": (np.zeros((3, 2), np.float32).T, (2, 3)),
        "strided": (np.zeros((2, 6), np.float32)[:, ::2], (2, 3)),
        "dtype": (a.astype(np.float64), (2, 3)),
        "byteorder": (a.astype(">f4"), (2, 3)),
        "subclass": (a.view(np.matrix), (2, 3)),
        "list": ([[0.0] * 3] * 2, (2, 3)),
        "none": (None, (2, 3)),
    }[case]
    assert not ready(arg, shape, F32)
