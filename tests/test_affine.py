"""Tests of the affine warp (functional.affine_forward/_backward/affine_matrices) and of
nn.RandomAffine. The rotation kernel is its special case: tests/test_kernel_rotate.py."""
import os
import platform

import numpy as np
import pytest
from scipy.ndimage import affine_transform

import fastconv
from fastconv import nn
from fastconv._kernels import ISA_LEVEL
from fastconv._kernels._openmp import cpu_supports
from fastconv.functional import (affine_backward, affine_forward, affine_matrices,
                                 rotate_backward, rotate_forward)
from fastconv.serialization import load_model, save_model
from tests.gradcheck import check_adjoint, check_vjp, numerical_gradient, relative_error

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1, 1), (1, 1, 5, 5), (2, 3, 7, 4), (3, 1, 6, 9), (2, 2, 28, 28)]
THREADS = [1, 2, 3, 4]
GOLDEN = os.path.join(os.path.dirname(__file__), "data", "rotate_golden.npz")


def random_theta(rng, n):
    """General inverse maps: a random linear part near the identity and shifts of a few
    pixels, so that most samples land inside the image and some outside."""
    theta = np.zeros((n, 2, 3))
    theta[:, :, :2] = np.eye(2) + rng.uniform(-0.6, 0.6, (n, 2, 2))
    theta[:, :, 2] = rng.uniform(-3, 3, (n, 2))
    return theta


def reference_affine(x, theta):
    """scipy.ndimage.affine_transform per plane, with theta's centre-relative map rewritten
    in scipy's absolute index coordinates: source = matrix @ p + offset with matrix = A and
    offset = c + b - A c. mode='grid-constant' is scipy's per-tap zero padding (fastconv's
    edge rule); mode='constant' would return cval for every sample outside [0, H-1] x
    [0, W-1] instead of blending the edge pixels with zeros."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    y = np.empty_like(x)
    for k in range(n):
        a, b = theta[k, :, :2], theta[k, :, 2]
        offset = centre + b - a @ centre
        for ch in range(c):
            y[k, ch] = affine_transform(x[k, ch], a, offset=offset, order=1,
                                        mode="grid-constant", cval=0.0)
    return y


def numpy_bilinear_affine(x, theta):
    """The same warp written out in NumPy: gather the four taps, zero the out-of-image ones."""
    n, c, h, w = x.shape
    ci, cj = (h - 1) / 2, (w - 1) / 2
    di, dj = np.meshgrid(np.arange(h) - ci, np.arange(w) - cj, indexing="ij")
    y = np.zeros((n, c, h, w))
    for k in range(n):
        r = ci + theta[k, 0, 2] + di * theta[k, 0, 0] + dj * theta[k, 0, 1]
        s = cj + theta[k, 1, 2] + di * theta[k, 1, 0] + dj * theta[k, 1, 1]
        r0, s0 = np.floor(r).astype(int), np.floor(s).astype(int)
        fr, fs = r - r0, s - s0
        for a, wa in ((0, 1 - fr), (1, fr)):
            for b, wb in ((0, 1 - fs), (1, fs)):
                rr, ss = r0 + a, s0 + b
                inside = (rr >= 0) & (rr < h) & (ss >= 0) & (ss < w)
                tap = x[k][:, np.clip(rr, 0, h - 1), np.clip(ss, 0, w - 1)]
                y[k] += np.where(inside, wa * wb, 0.0) * tap
    return y


@pytest.fixture
def threads():
    """Set the global thread count inside a test and restore the setting afterwards."""
    before = fastconv.get_thread_setting()
    yield fastconv.set_num_threads
    fastconv.set_num_threads(before)


# -- the kernel ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_scipy_affine_transform(rng, dtype, n_threads, shape):
    x = rng.standard_normal(shape).astype(dtype)
    theta = random_theta(rng, shape[0])
    y = affine_forward(x, theta, n_threads=n_threads)
    assert y.dtype == dtype and y.shape == x.shape
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, reference_affine(x, theta), rtol=tol, atol=tol)


def test_forward_matches_numpy_bilinear(rng):
    x = rng.standard_normal((3, 2, 11, 8))
    theta = random_theta(rng, 3)
    np.testing.assert_allclose(affine_forward(x, theta), numpy_bilinear_affine(x, theta),
                               rtol=1e-12, atol=1e-12)


def test_large_batch_in_parallel_matches_scipy(rng):
    x = rng.standard_normal((4, 3, 40, 37))
    theta = random_theta(rng, 4)
    np.testing.assert_allclose(affine_forward(x, theta, n_threads=2),
                               reference_affine(x, theta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_matrix_is_identity(rng, dtype):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    theta = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
    np.testing.assert_array_equal(affine_forward(x, theta), x)


def test_rotation_is_the_special_case_bit_for_bit(rng):
    x = rng.standard_normal((4, 2, 13, 11)).astype(np.float32)
    angles = rng.uniform(-4, 4, 4)
    theta = affine_matrices(angles)
    np.testing.assert_array_equal(theta[:, :, :2], np.stack(
        [np.cos(angles), np.sin(angles), -np.sin(angles), np.cos(angles)], 1).reshape(4, 2, 2))
    assert not theta[:, :, 2].any()
    assert affine_forward(x, theta).tobytes() == rotate_forward(x, angles).tobytes()
    assert affine_backward(x, theta).tobytes() == rotate_backward(x, angles).tobytes()
    # Neutral shear, scale and shift leave the matrices exactly the rotation's.
    ones, zeros = np.ones(4), np.zeros(4)
    same = affine_matrices(angles, scale=ones, shear=zeros, shift=np.zeros((4, 2)))
    assert affine_forward(x, same).tobytes() == rotate_forward(x, angles).tobytes()


def test_rotation_outputs_unchanged_by_the_generalization():
    """rotate_forward/_backward against outputs recorded with the rotation-only kernel this
    one replaced (tests/data/rotate_golden.npz). Bit for bit on a build like the recording
    one; other CPUs or ISA levels may contract multiply-adds differently (see
    fastconv._kernels), so there the outputs must agree to rounding."""
    golden = np.load(GOLDEN)
    same_build = (str(golden["machine"]) == platform.machine()
                  and str(golden["isa"]) == ISA_LEVEL
                  and bool(golden["v3"]) == cpu_supports("v3")
                  and bool(golden["v4"]) == cpu_supports("v4"))
    k = 0
    while f"x{k}" in golden:
        x, angles = golden[f"x{k}"], golden[f"angles{k}"]
        for n_threads in (1, 2):
            for got, want in ((rotate_forward(x, angles, n_threads=n_threads), golden[f"y{k}"]),
                              (rotate_backward(x, angles, n_threads=n_threads),
                               golden[f"gx{k}"])):
                assert got.dtype == want.dtype
                if same_build:
                    np.testing.assert_array_equal(got, want)
                else:
                    tol = 1e-12 if got.dtype == np.float64 else 1e-5
                    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        k += 1
    assert k == 4


# -- the geometry of affine_matrices ------------------------------------------------------

def _peak(y):
    return np.unravel_index(np.argmax(y), y.shape)


def test_shift_moves_down_and_right():
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 4] = 1.0
    y = affine_forward(x, affine_matrices(np.zeros(1), shift=np.array([[2.0, -3.0]])))
    assert _peak(y[0, 0]) == (6, 1) and y[0, 0, 6, 1] == 1.0


def test_scale_enlarges_about_the_centre():
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 6] = 1.0                      # two columns right of the centre
    y = affine_forward(x, affine_matrices(np.zeros(1), scale=np.array([2.0])))
    assert _peak(y[0, 0]) == (4, 8) and y[0, 0, 4, 8] == 1.0


def test_positive_shear_slants_the_top_to_the_right():
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 2, 4] = 1.0                      # two rows above the centre
    y = affine_forward(x, affine_matrices(np.zeros(1), shear=np.array([np.pi / 4])))
    assert _peak(y[0, 0]) == (2, 6)
    np.testing.assert_allclose(y[0, 0, 2, 6], 1.0, rtol=1e-12)


def test_composition_order_scale_shear_rotate_shift(rng):
    """theta inverts p -> R(t) S(s) (k p) + shift, checked against matrices built by hand."""
    angles, shear = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
    scale = rng.uniform(0.7, 1.3, 3)
    shift = rng.uniform(-2, 2, (3, 2))
    theta = affine_matrices(angles, scale=scale, shear=shear, shift=shift)
    for k in range(3):
        c, s = np.cos(angles[k]), np.sin(angles[k])
        rot = np.array([[c, -s], [s, c]])                     # (row, col), counter-clockwise
        sh = np.array([[1.0, 0.0], [-np.tan(shear[k]), 1.0]])
        m = rot @ sh * scale[k]
        p = rng.standard_normal(2)
        q = m @ p + shift[k]
        np.testing.assert_allclose(theta[k, :, :2] @ q + theta[k, :, 2], p, atol=1e-12)


# -- backward ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 3, 5), (2, 1, 6, 6)])
def test_gradcheck_float64(rng, shape):
    theta = random_theta(rng, shape[0])
    x = rng.standard_normal(shape)
    check_vjp(lambda a: affine_forward(a, theta),
              lambda a, y, g: affine_backward(g, theta), x, rng)


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (3, 2, 4, 9), (2, 1, 28, 28)])
def test_adjoint(rng, shape):
    theta = random_theta(rng, shape[0])
    u, v = rng.standard_normal(shape), rng.standard_normal(shape)
    check_adjoint(lambda a: affine_forward(a, theta), lambda b: affine_backward(b, theta),
                  u, v, tol=1e-12)


@pytest.mark.parametrize("fn", [affine_forward, affine_backward])
def test_float32_matches_float64(rng, fn):
    x = rng.standard_normal((3, 2, 15, 13))
    theta = random_theta(rng, 3)
    y32 = fn(x.astype(np.float32), theta)
    assert y32.dtype == np.float32
    assert relative_error(y32, fn(x, theta)) < 1e-5


# -- threads -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [affine_forward, affine_backward])
def test_same_bits_on_1_to_4_threads(rng, threads, fn, dtype):
    x = rng.standard_normal((16, 3, 32, 32)).astype(dtype)    # above the parallel threshold
    theta = random_theta(rng, 16)
    results = []
    for n in THREADS:
        threads(n)
        results.append(fn(x, theta).tobytes())
    assert all(r == results[0] for r in results)


def test_layer_same_bits_on_1_to_4_threads(rng, threads):
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in THREADS:
        threads(n)
        layer = nn.RandomAffine(0.2, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=0.2)
        layer.set_rng(np.random.default_rng(3))
        results.append((layer.forward(x).tobytes(), layer.backward(g).tobytes()))
    assert all(r == results[0] for r in results)


# -- the layer -----------------------------------------------------------------------------

def _layer(seed=0, **kw):
    kw = {"rotate_sigma": 0.2, "translate": (0.1, 0.15), "scale": (0.8, 1.2),
          "shear": 0.3, **kw}
    m = nn.RandomAffine(**kw)
    m.set_rng(np.random.default_rng(seed))
    return m


def test_layer_is_seeded(rng):
    x = rng.standard_normal((6, 2, 10, 12)).astype(np.float32)
    a, b, c = _layer(5).forward(x), _layer(5).forward(x), _layer(6).forward(x)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    layer = _layer(5)
    first, second = layer.forward(x).copy(), layer.forward(x)
    assert not np.array_equal(first, second)      # a new draw every batch


def test_layer_draws_in_the_documented_order(rng):
    x = rng.standard_normal((5, 1, 10, 12))
    layer = _layer(9)
    y = layer.forward(x)
    r = np.random.default_rng(9)
    angles = r.normal(0.0, 0.2, 5)
    u = r.random((4, 5))
    shift = np.stack([(2 * u[1] - 1) * (0.15 * 10), (2 * u[0] - 1) * (0.1 * 12)], axis=1)
    theta = affine_matrices(angles, scale=0.8 + (1.2 - 0.8) * u[2], shear=(2 * u[3] - 1) * 0.3,
                            shift=shift)
    np.testing.assert_array_equal(y, affine_forward(x, theta))


def test_layer_with_rotation_only_equals_random_rotation(rng):
    x = rng.standard_normal((7, 2, 9, 11)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    aff = nn.RandomAffine(rotate_sigma=0.3)
    rot = nn.RandomRotation(0.3)
    aff.set_rng(np.random.default_rng(2))
    rot.set_rng(np.random.default_rng(2))
    assert aff.forward(x).tobytes() == rot.forward(x).tobytes()
    assert aff.backward(g).tobytes() == rot.backward(g).tobytes()


def test_layer_identity_in_eval_and_with_empty_ranges(rng):
    x = rng.standard_normal((4, 1, 8, 8))
    layer = _layer().eval()
    assert layer.forward(x) is x
    assert layer.backward(x) is x
    layer.train()
    assert not np.array_equal(layer.forward(x), x)
    plain = nn.RandomAffine()
    gen = np.random.default_rng(1)
    plain.set_rng(gen)
    state = gen.bit_generator.state
    assert plain.forward(x) is x and plain.backward(x) is x
    assert gen.bit_generator.state == state       # nothing drawn


def test_layer_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((3, 2, 7, 6))
    layer = _layer(4)

    def forward(z):
        layer.set_rng(np.random.default_rng(4))      # the same transforms every evaluation
        return layer.forward(z)

    check_vjp(forward, lambda z, y, g: layer.backward(g), x, rng)


def test_composes_with_random_rotation_in_a_sequential(rng, tmp_path):
    model = nn.Sequential(nn.RandomRotation(0.2), _layer(),
                          nn.Conv2d(1, 2, 3, rng=0, dtype=np.float64), nn.Tanh(), nn.Flatten(),
                          nn.Linear(2 * 8 * 8, 3, rng=1, dtype=np.float64), nn.LogSoftmax())
    x = rng.standard_normal((4, 1, 10, 10))
    target = np.array([0, 2, 1, 2])
    crit = nn.NLLLoss()

    def loss_at(z):
        model.set_rng(np.random.default_rng(11))
        return crit.forward(model.forward(z), target)

    loss_at(x)
    model.zero_grad()
    grad_x = model.backward(crit.backward())
    assert relative_error(grad_x, numerical_gradient(loss_at, x)) < 1e-6

    path = tmp_path / "m.npz"
    save_model(path, model)
    loaded, _ = load_model(path)
    assert [type(m).__name__ for m in loaded.layers][:2] == ["RandomRotation", "RandomAffine"]
    assert loaded.layers[1].config() == model.layers[1].config()
    model.eval()
    assert not loaded.training                    # load_model returns it in evaluation mode
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))
    model.train().set_rng(np.random.default_rng(3))
    loaded.train().set_rng(np.random.default_rng(3))
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))


def test_config_round_trip():
    layer = _layer()
    config = layer.config()
    assert config == {"type": "RandomAffine", "rotate_sigma": 0.2, "translate": [0.1, 0.15],
                      "scale": [0.8, 1.2], "shear": 0.3}
    again = nn.module_from_config(config)
    assert again.translate == (0.1, 0.15) and again.scale == (0.8, 1.2)
    assert repr(again) == ("RandomAffine(rotate_sigma=0.2, translate=(0.1, 0.15), "
                           "scale=(0.8, 1.2), shear=0.3)")


# -- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, name", [(affine_forward, "x"), (affine_backward, "grad_out")])
def test_kernel_validation(fn, name):
    x = np.zeros((2, 1, 4, 4))
    theta = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
    fname = fn.__name__
    with pytest.raises(TypeError, match=f"{fname}: {name} must be a numpy.ndarray"):
        fn(x.tolist(), theta)
    with pytest.raises(ValueError,
                       match=rf"{name} must be 4-D \(N, C, H, W\); got shape \(4, 4\)"):
        fn(x[0, 0], theta)
    with pytest.raises(TypeError,
                       match=f"{name} must have dtype float32 or float64; got int64"):
        fn(x.astype(np.int64), theta)
    with pytest.raises(TypeError, match=f"{fname}: theta must be a numpy.ndarray; got list"):
        fn(x, theta.tolist())
    with pytest.raises(ValueError, match=r"theta must be 3-D \(N, 2, 3\); got shape \(2, 6\)"):
        fn(x, theta.reshape(2, 6))
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 2, 3\) \(N, 2, 3\); "
                                         r"got shape \(2, 3, 2\)"):
        fn(x, theta.reshape(2, 3, 2))
    with pytest.raises(ValueError, match=r"theta must have shape \(2, 2, 3\) to match the "
                                         r"batch; got shape \(3, 2, 3\)"):
        fn(x, np.concatenate([theta, theta[:1]]))
    with pytest.raises(TypeError, match="theta must have an integer or floating dtype; "
                                        "got complex128"):
        fn(x, theta.astype(complex))
    bad = theta.copy()
    bad[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="theta must be finite; got nan"):
        fn(x, bad)
    bad[1, 0, 2] = 1e300
    with pytest.raises(ValueError, match=r"theta must map the image grid within \+-2\*\*40 "
                                         r"pixels; theta\[1\] reaches 1e\+300"):
        fn(x, bad)
    with pytest.raises(ValueError, match="out must have shape"):
        fn(x, theta, out=np.empty((2, 1, 4, 5)))
    with pytest.raises(ValueError, match="out must not share memory"):
        fn(x, theta, out=x)
    with pytest.raises(ValueError, match="n_threads must be a non-zero integer"):
        fn(x, theta, n_threads=0)


def test_integer_theta_and_non_contiguous_inputs(rng):
    x = rng.standard_normal((2, 2, 9, 8))
    eye = np.tile(np.array([[1, 0, 0], [0, 1, 0]]), (2, 1, 1))
    np.testing.assert_array_equal(affine_forward(x, eye), x)
    theta = random_theta(rng, 4)[::2]
    flipped = x[..., ::-1]
    np.testing.assert_array_equal(affine_forward(flipped, theta),
                                  affine_forward(np.ascontiguousarray(flipped),
                                                 np.ascontiguousarray(theta)))


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (2, 3, 0, 4)])
def test_empty(shape):
    y = affine_forward(np.zeros(shape, dtype=np.float32), np.zeros((shape[0], 2, 3)))
    assert y.shape == shape and y.dtype == np.float32


def test_affine_matrices_validation():
    with pytest.raises(TypeError, match="affine_matrices: angles must be a numpy.ndarray"):
        affine_matrices([0.0])
    with pytest.raises(ValueError, match=r"affine_matrices: angles must be 1-D \(N,\)"):
        affine_matrices(np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"scale must have shape \(2,\) to match the batch; "
                                         r"got shape \(3,\)"):
        affine_matrices(np.zeros(2), scale=np.ones(3))
    with pytest.raises(ValueError, match="scale must be > 0; got 0.0"):
        affine_matrices(np.zeros(2), scale=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"shear must lie in \(-pi/2, pi/2\); got -2.0"):
        affine_matrices(np.zeros(2), shear=np.array([0.0, -2.0]))
    with pytest.raises(ValueError, match=r"shift must be 2-D \(N, 2\); got shape \(2,\)"):
        affine_matrices(np.zeros(2), shift=np.zeros(2))
    with pytest.raises(ValueError, match=r"shift must have shape \(2, 2\) \(N, 2\); "
                                         r"got shape \(2, 3\)"):
        affine_matrices(np.zeros(2), shift=np.zeros((2, 3)))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rotate_sigma": -0.1}, ValueError, "RandomAffine: rotate_sigma must be >= 0.0; got -0.1"),
    ({"rotate_sigma": "a"}, TypeError, "RandomAffine: rotate_sigma must be a real number"),
    ({"translate": 0.1}, ValueError, "RandomAffine: translate must be a pair of numbers; "
                                     "got 0.1"),
    ({"translate": (0.1, 1.5)}, ValueError, "RandomAffine: translate must be <= 1.0; got 1.5"),
    ({"scale": (0.0, 1.0)}, ValueError, "RandomAffine: scale must be > 0.0; got 0.0"),
    ({"scale": (1.2, 0.8)}, ValueError, r"RandomAffine: scale must be a range \(lo, hi\) "
                                        r"with lo <= hi; got \(1.2, 0.8\)"),
    ({"scale": (1.0, float("inf"))}, ValueError, "RandomAffine: scale must be finite; got inf"),
    ({"shear": 1.6}, ValueError, r"RandomAffine: shear must be < 1.57\d*; got 1.6"),
    ({"shear": -0.1}, ValueError, "RandomAffine: shear must be >= 0.0; got -0.1"),
])
def test_layer_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.RandomAffine(**kwargs)


def test_layer_input_errors_name_the_layer():
    layer = _layer()
    with pytest.raises(ValueError, match=r"RandomAffine.*4-D"):
        layer(np.zeros((4, 4)))
    with pytest.raises(TypeError, match=r"RandomAffine.*float32 or float64"):
        layer(np.zeros((1, 1, 4, 4), dtype=np.int32))


def test_a_refused_batch_draws_nothing():
    layer = _layer()
    state = layer.rng.bit_generator.state
    with pytest.raises(TypeError):
        layer.forward(np.zeros((2, 1, 4, 4), dtype=np.int64))
    assert layer.rng.bit_generator.state == state
