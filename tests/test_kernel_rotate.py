"""Tests of fastconv.functional.rotate_forward / rotate_backward."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates

from fastconv.functional import rotate_backward, rotate_forward
from tests.gradcheck import check_adjoint, check_vjp, relative_error

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1, 1), (1, 1, 5, 5), (2, 3, 7, 4), (3, 1, 6, 9), (1, 2, 8, 8)]


def reference_rotate(x, angles):
    """Per-image scipy map_coordinates with the same inverse mapping.

    mode='grid-constant' is scipy's per-tap zero padding: mode='constant' would instead return
    cval for every sample outside [0, H-1] x [0, W-1], without blending the edge pixels in.
    """
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    ci, cj = (h - 1) / 2, (w - 1) / 2
    ii, jj = np.meshgrid(np.arange(h) - ci, np.arange(w) - cj, indexing="ij")
    y = np.empty_like(x)
    for k in range(n):
        ct, st = np.cos(angles[k]), np.sin(angles[k])
        coords = np.stack([ci + ii * ct + jj * st, cj - ii * st + jj * ct])
        for ch in range(c):
            y[k, ch] = map_coordinates(x[k, ch], coords, order=1, mode="grid-constant", cval=0.0)
    return y


def smooth_images(n, c, h, w):
    ii, jj = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = np.empty((n, c, h, w))
    for k in range(n):
        for ch in range(c):
            out[k, ch] = np.exp(-((ii - 0.1 * k) ** 2 + (jj + 0.1 * ch) ** 2) * 2.0)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_scipy(rng, dtype, n_threads, shape):
    x = rng.standard_normal(shape).astype(dtype)
    angles = rng.uniform(-4, 4, shape[0])
    y = rotate_forward(x, angles, n_threads=n_threads)
    assert y.dtype == dtype and y.shape == x.shape
    ref = reference_rotate(x, angles)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_forward_large_batch_parallel_matches_scipy(rng):
    x = rng.standard_normal((4, 3, 40, 37))
    angles = rng.uniform(-np.pi, np.pi, 4)
    np.testing.assert_allclose(rotate_forward(x, angles, n_threads=2),
                               reference_rotate(x, angles), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_angle_is_identity(rng, dtype):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    np.testing.assert_array_equal(rotate_forward(x, np.zeros(2)), x)


@pytest.mark.parametrize("size", [1, 4, 7])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turns_equal_rot90(rng, size, k):
    x = rng.standard_normal((2, 3, size, size))
    y = rotate_forward(x, np.full(2, k * np.pi / 2))
    np.testing.assert_allclose(y, np.rot90(x, k, axes=(-2, -1)), rtol=0, atol=1e-9)


def test_direction_is_counter_clockwise_as_displayed():
    # A marker right of the centre must move to above it (smaller row index).
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 4] = 1.0
    y = rotate_forward(x, np.array([np.pi / 2]))
    assert np.unravel_index(np.argmax(y[0, 0]), (5, 5)) == (0, 2)


def test_integer_angles_accepted(rng):
    x = rng.standard_normal((2, 1, 5, 5))
    np.testing.assert_array_equal(rotate_forward(x, np.array([1, -2])),
                                  rotate_forward(x, np.array([1.0, -2.0])))


def test_round_trip_on_smooth_image():
    x = smooth_images(2, 2, 33, 33)
    angles = np.array([0.4, -0.9])
    back = rotate_forward(rotate_forward(x, angles), -angles)
    # Corners leave the frame; the central disc survives two bilinear resamplings.
    ii, jj = np.meshgrid(np.arange(33) - 16, np.arange(33) - 16, indexing="ij")
    inner = ii ** 2 + jj ** 2 <= 12 ** 2
    assert np.max(np.abs(back - x)[..., inner]) < 2e-2


def test_constant_image_stays_constant_inside():
    h, w = 21, 17
    x = np.full((3, 2, h, w), 2.5)
    angles = np.array([0.3, 1.2, -2.0])
    y = rotate_forward(x, angles)
    ci, cj = (h - 1) / 2, (w - 1) / 2
    ii, jj = np.meshgrid(np.arange(h) - ci, np.arange(w) - cj, indexing="ij")
    # Points within the inscribed circle map to sources strictly inside the grid.
    inside = ii ** 2 + jj ** 2 <= (min(ci, cj)) ** 2
    np.testing.assert_allclose(y[..., inside], 2.5, rtol=1e-13)
    assert np.all(y <= 2.5 + 1e-12) and np.all(y >= 0)


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 1, 6, 6), (3, 2, 4, 9)])
def test_adjoint(rng, shape):
    angles = rng.uniform(-4, 4, shape[0])
    u = rng.standard_normal(shape)
    v = rng.standard_normal(shape)
    check_adjoint(lambda a: rotate_forward(a, angles), lambda b: rotate_backward(b, angles),
                  u, v, tol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 3, 5), (2, 1, 4, 4)])
def test_gradcheck(rng, shape):
    angles = rng.uniform(-4, 4, shape[0])
    x = rng.standard_normal(shape)
    check_vjp(lambda a: rotate_forward(a, angles),
              lambda a, y, g: rotate_backward(g, angles), x, rng)


@pytest.mark.parametrize("fn", ["forward", "backward"])
def test_float32_matches_float64(rng, fn):
    x = rng.standard_normal((3, 2, 15, 13))
    angles = rng.uniform(-4, 4, 3)
    f = rotate_forward if fn == "forward" else rotate_backward
    y64 = f(x, angles)
    y32 = f(x.astype(np.float32), angles)
    assert y32.dtype == np.float32
    assert relative_error(y32, y64) < 1e-5


@pytest.mark.parametrize("fn", [rotate_forward, rotate_backward])
def test_deterministic_and_thread_independent(rng, fn):
    x = rng.standard_normal((5, 3, 41, 39)).astype(np.float32)
    angles = rng.uniform(-4, 4, 5)
    a = fn(x, angles, n_threads=2)
    b = fn(x, angles, n_threads=2)
    c = fn(x, angles, n_threads=1)
    assert a.tobytes() == b.tobytes()
    # Each plane is computed the same way whichever thread runs it.
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("fn", [rotate_forward, rotate_backward])
def test_non_contiguous_and_readonly_inputs(rng, fn):
    base = rng.standard_normal((3, 2, 9, 8))
    angles = rng.uniform(-4, 4, 6)
    x = np.asfortranarray(base)
    np.testing.assert_array_equal(fn(x, angles[:3]), fn(base, angles[:3]))
    flipped = base[..., ::-1]
    np.testing.assert_array_equal(fn(flipped, angles[:3]),
                                  fn(np.ascontiguousarray(flipped), angles[:3]))
    sliced = rng.standard_normal((6, 2, 9, 8))[::2, :, 1:, :]
    np.testing.assert_array_equal(fn(sliced, angles[::2]),
                                  fn(np.ascontiguousarray(sliced), angles[::2].copy()))
    ro = base.copy()
    ro.flags.writeable = False
    ang_ro = angles[:3].copy()
    ang_ro.flags.writeable = False
    np.testing.assert_array_equal(fn(ro, ang_ro), fn(base, angles[:3]))


@pytest.mark.parametrize("fn", [rotate_forward, rotate_backward])
@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (2, 3, 0, 4), (2, 3, 4, 0)])
def test_empty(fn, shape):
    x = np.zeros(shape, dtype=np.float32)
    y = fn(x, np.zeros(shape[0]))
    assert y.shape == shape and y.dtype == np.float32


@pytest.mark.parametrize("fn", [rotate_forward, rotate_backward])
def test_nan_and_inf_do_not_crash(rng, fn):
    x = rng.standard_normal((2, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    x[1, 0, 0, 0] = np.inf
    y = fn(x, np.array([0.3, 0.0]))
    assert np.isnan(y[0]).any()
    assert np.isinf(y[1]).any()


@pytest.mark.parametrize("fn", [rotate_forward, rotate_backward])
def test_out_buffer(rng, fn):
    x = rng.standard_normal((2, 3, 5, 6))
    angles = np.array([0.5, -1.0])
    out = np.empty_like(x)
    y = fn(x, angles, out=out)
    assert y is out
    np.testing.assert_array_equal(out, fn(x, angles))
    with pytest.raises(ValueError, match="out must have shape"):
        fn(x, angles, out=np.empty((2, 3, 5, 5)))
    with pytest.raises(TypeError, match="out must have dtype float64"):
        fn(x, angles, out=np.empty(x.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fn(x, angles, out=np.empty(x.shape, order="F"))
    with pytest.raises(ValueError, match="out must not share memory"):
        fn(x, angles, out=x)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        fn(x, angles, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fn(x, angles, out=[0.0])


@pytest.mark.parametrize("fn, name", [(rotate_forward, "x"), (rotate_backward, "grad_out")])
def test_validation(fn, name):
    x = np.zeros((2, 1, 4, 4))
    angles = np.zeros(2)
    fname = fn.__name__
    with pytest.raises(TypeError, match=f"{fname}: {name} must be a numpy.ndarray"):
        fn(x.tolist(), angles)
    with pytest.raises(ValueError, match=rf"{name} must be 4-D \(N, C, H, W\); got shape \(4, 4\)"):
        fn(x[0, 0], angles)
    with pytest.raises(TypeError, match=f"{name} must have dtype float32 or float64"):
        fn(x.astype(np.int64), angles)
    with pytest.raises(TypeError, match="angles must be a numpy.ndarray"):
        fn(x, [0.0, 0.0])
    with pytest.raises(ValueError, match=r"angles must be 1-D \(N,\); got shape \(2, 1\)"):
        fn(x, np.zeros((2, 1)))
    with pytest.raises(TypeError, match="angles must have an integer or floating dtype"):
        fn(x, np.zeros(2, dtype=complex))
    with pytest.raises(TypeError, match="angles must have an integer or floating dtype"):
        fn(x, np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match=r"angles must have shape \(2,\) to match the batch; "
                                         r"got shape \(3,\)"):
        fn(x, np.zeros(3))
    with pytest.raises(ValueError, match="angles must be finite; got nan"):
        fn(x, np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="angles must be finite; got inf"):
        fn(x, np.array([np.inf, 0.0]))
    with pytest.raises(ValueError, match="n_threads must be a non-zero integer"):
        fn(x, angles, n_threads=0)


def test_float16_angles_and_uint_angles(rng):
    x = rng.standard_normal((2, 1, 5, 5))
    a16 = np.array([0.5, -1.0], dtype=np.float16)
    np.testing.assert_array_equal(rotate_forward(x, a16), rotate_forward(x, a16.astype(float)))
    np.testing.assert_array_equal(rotate_forward(x, np.array([0, 1], dtype=np.uint8)),
                                  rotate_forward(x, np.array([0.0, 1.0])))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9),
       angle=st.floats(-1e3, 1e3, allow_nan=False), seed=st.integers(0, 2 ** 31))
def test_property_adjoint_and_scipy(n, c, h, w, angle, seed):
    rng = np.random.default_rng(seed)
    angles = angle + np.arange(n)
    u = rng.standard_normal((n, c, h, w))
    v = rng.standard_normal((n, c, h, w))
    # Scaled by the norms, not by <Au, v>, which can cancel to ~0 for unlucky draws.
    au, atv = rotate_forward(u, angles), rotate_backward(v, angles)
    scale = np.linalg.norm(au) * np.linalg.norm(v) + np.linalg.norm(u) * np.linalg.norm(atv)
    assert abs(np.vdot(au, v) - np.vdot(u, atv)) <= 1e-13 * scale + 1e-300
    np.testing.assert_allclose(rotate_forward(u, angles), reference_rotate(u, angles),
                               rtol=1e-11, atol=1e-11)
