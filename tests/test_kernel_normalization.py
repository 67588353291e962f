"""Tests of Torch7-style spatial subtractive / contrastive normalization kernels."""
import numpy as np
import pytest
from scipy.signal import correlate2d

from fastconv.functional import (
    gaussian_kernel_1d,
    spatial_contrastive_normalization_backward,
    spatial_contrastive_normalization_forward,
    spatial_subtractive_normalization_backward,
    spatial_subtractive_normalization_forward,
)
from tests.gradcheck import check_adjoint, check_vjp, relative_error

sub_fwd = spatial_subtractive_normalization_forward
sub_bwd = spatial_subtractive_normalization_backward
cn_fwd = spatial_contrastive_normalization_forward
cn_bwd = spatial_contrastive_normalization_backward

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1, 1), (1, 1, 7, 5), (2, 3, 9, 8), (3, 2, 6, 11), (2, 1, 3, 4)]


def kernels():
    """1-D Gaussian, 2-D non-symmetric, 2-D box, and a 1-D kernel larger than small images."""
    rng = np.random.default_rng(7)
    k2 = rng.uniform(0.1, 1.0, (3, 5))
    return {"gauss1d": gaussian_kernel_1d(5), "rand2d": k2, "box": np.ones((5, 3)),
            "wide1d": gaussian_kernel_1d(9, 0.3)}


KERNELS = kernels()


# --- Reference: Torch7's module graph, literally, in float64 -----------------------------

def _mean_estimator(img, k):
    """Torch's meanestimator: zero padding, per-plane convolutions, Sum over planes."""
    c = img.shape[0]
    if k.ndim == 2:
        ph, pw = k.shape[0] // 2, k.shape[1] // 2
        p = np.pad(img, ((0, 0), (ph, ph), (pw, pw)))
        return sum(correlate2d(p[ch], k, mode="valid") for ch in range(c))
    pad = k.shape[0] // 2
    p = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    # SpatialConvolutionMap (1 x K, per plane), then SpatialConvolution (K x 1, all planes).
    rows = [correlate2d(p[ch], k[None, :], mode="valid") for ch in range(c)]
    return sum(correlate2d(rows[ch], k[:, None], mode="valid") for ch in range(c))


def torch_subtractive(x, kernel):
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    k = np.asarray(kernel, dtype=np.float64)
    k = k / (k.sum() * c)
    coef = _mean_estimator(np.ones(x.shape[1:]), k)
    return np.stack([s - _mean_estimator(s, k)[None] / coef[None] for s in x])


def torch_divisive_std(z, kernel):
    """Torch's adjustedstds (one plane per sample), before the threshold."""
    z = np.asarray(z, dtype=np.float64)
    c = z.shape[1]
    k = np.asarray(kernel, dtype=np.float64)
    k = k / (k.sum() * (c if k.ndim == 2 else np.sqrt(c)))
    coef = _mean_estimator(np.ones(z.shape[1:]), k)
    return np.stack([np.sqrt(_mean_estimator(s ** 2, k)) / coef for s in z])


def torch_contrastive(x, kernel, threshold=1e-4):
    z = torch_subtractive(x, kernel)
    adj = torch_divisive_std(z, kernel)
    d = np.where(adj > threshold, adj, threshold)
    return z / d[:, None]


# --- Forward ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kname", sorted(KERNELS))
def test_forward_matches_torch_reference(rng, dtype, n_threads, shape, kname):
    x = rng.standard_normal(shape).astype(dtype)
    k = KERNELS[kname].astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    y = sub_fwd(x, k, n_threads=n_threads)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, torch_subtractive(x, k), rtol=tol, atol=tol)
    y = cn_fwd(x, k, n_threads=n_threads)
    assert y.dtype == dtype and y.shape == x.shape
    ref = torch_contrastive(x, k)
    np.testing.assert_allclose(y, ref, rtol=tol * 10, atol=tol * 10)


def test_large_batch_parallel_path_matches_reference(rng):
    x = rng.standard_normal((6, 3, 20, 17))
    k = KERNELS["rand2d"]
    np.testing.assert_allclose(cn_fwd(x, k, n_threads=2), torch_contrastive(x, k),
                               rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(sub_fwd(x, KERNELS["gauss1d"], n_threads=2),
                               torch_subtractive(x, KERNELS["gauss1d"]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.8, 5.0])
def test_contrastive_threshold_matches_reference(rng, threshold):
    x = rng.standard_normal((2, 3, 8, 9))
    x[1] *= 0.05
    k = KERNELS["gauss1d"]
    np.testing.assert_allclose(cn_fwd(x, k, threshold), torch_contrastive(x, k, threshold),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kname", sorted(KERNELS))
def test_constant_image_subtracts_to_zero(kname):
    x = np.full((2, 3, 7, 6), 3.25)
    x[1] = -1.5
    y = sub_fwd(x, KERNELS[kname])
    np.testing.assert_allclose(y, 0.0, atol=1e-13)
    # The contrastive output of a constant image is 0 as well (std under the threshold).
    np.testing.assert_allclose(cn_fwd(x, KERNELS[kname]), 0.0, atol=1e-9)


def test_kernel_scale_does_not_matter(rng):
    x = rng.standard_normal((2, 2, 6, 7))
    k = KERNELS["rand2d"]
    np.testing.assert_allclose(cn_fwd(x, 7.5 * k), cn_fwd(x, k), rtol=1e-13, atol=1e-14)


def test_gaussian_kernel_1d_matches_torch_formula():
    # image.gaussian1D: 1-based i, centre = size/2 + 0.5, exp(-((i - centre)/(sigma*size))^2/2)
    for size, sigma in [(7, 0.25), (5, 0.4), (1, 0.25), (4, 0.25)]:
        i = np.arange(1, size + 1)
        ref = np.exp(-(((i - (size / 2 + 0.5)) / (sigma * size)) ** 2) / 2)
        np.testing.assert_allclose(gaussian_kernel_1d(size, sigma), ref, rtol=1e-15)
    g = gaussian_kernel_1d()
    assert g.shape == (7,) and g.dtype == np.float64 and g[3] == 1.0
    np.testing.assert_array_equal(g, gaussian_kernel_1d(7, 0.25))
    assert gaussian_kernel_1d(5, dtype=np.float32).dtype == np.float32


def test_gaussian_kernel_1d_validation():
    with pytest.raises(ValueError, match="gaussian_kernel_1d: size must be >= 1"):
        gaussian_kernel_1d(0)
    with pytest.raises(TypeError, match="size must be an int"):
        gaussian_kernel_1d(7.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_kernel_1d(7, 0.0)
    with pytest.raises(ValueError, match="sigma must be finite"):
        gaussian_kernel_1d(7, np.inf)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        gaussian_kernel_1d(7, dtype=np.int32)


# --- Backward -----------------------------------------------------------------------------

GRAD_CASES = [((2, 3, 9, 8), "gauss1d"), ((1, 1, 5, 7), "rand2d"), ((2, 2, 4, 6), "box"),
              ((1, 2, 3, 3), "wide1d")]


@pytest.mark.parametrize("shape, kname", GRAD_CASES)
def test_subtractive_gradcheck(rng, shape, kname):
    k = KERNELS[kname]
    check_vjp(lambda a: sub_fwd(a, k), lambda a, y, g: sub_bwd(a, k, g),
              rng.standard_normal(shape), rng)


@pytest.mark.parametrize("shape, kname", GRAD_CASES)
def test_subtractive_adjoint(rng, shape, kname):
    k = KERNELS[kname]
    x = np.zeros(shape)
    check_adjoint(lambda a: sub_fwd(a, k), lambda b: sub_bwd(x, k, b),
                  rng.standard_normal(shape), rng.standard_normal(shape))


@pytest.mark.parametrize("shape, kname", GRAD_CASES)
def test_contrastive_gradcheck(rng, shape, kname):
    k = KERNELS[kname]
    check_vjp(lambda a: cn_fwd(a, k), lambda a, y, g: cn_bwd(a, k, g),
              rng.standard_normal(shape), rng)


@pytest.mark.parametrize("shape, kname", GRAD_CASES[:3])
def test_contrastive_gradcheck_with_active_threshold(rng, shape, kname):
    """Some pixels use the threshold value (no gradient through std), others do not."""
    k = KERNELS[kname]
    x = rng.standard_normal(shape)
    x[0] *= 0.1
    adj = np.sort(torch_divisive_std(torch_subtractive(x, k), k).ravel())
    # Put the threshold in the widest gap of the middle half, far from any kink.
    lo, hi = len(adj) // 4, max(len(adj) * 3 // 4, len(adj) // 4 + 2)
    gaps = np.diff(adj[lo:hi])
    g = lo + int(np.argmax(gaps))
    threshold = 0.5 * (adj[g] + adj[g + 1])
    assert adj[g + 1] - adj[g] > 1e-4
    assert (adj > threshold).any() and (adj < threshold).any()
    check_vjp(lambda a: cn_fwd(a, k, threshold), lambda a, y, gr: cn_bwd(a, k, gr, threshold),
              x, rng)


@pytest.mark.parametrize("which", ["sub_fwd", "sub_bwd", "cn_fwd", "cn_bwd"])
@pytest.mark.parametrize("kname", ["gauss1d", "rand2d"])
def test_float32_matches_float64(rng, which, kname):
    x = rng.standard_normal((3, 2, 12, 13))
    g = rng.standard_normal(x.shape)
    k = KERNELS[kname]

    def run(dt):
        xs, ks, gs = x.astype(dt), k.astype(dt), g.astype(dt)
        return {"sub_fwd": lambda: sub_fwd(xs, ks), "sub_bwd": lambda: sub_bwd(xs, ks, gs),
                "cn_fwd": lambda: cn_fwd(xs, ks), "cn_bwd": lambda: cn_bwd(xs, ks, gs)}[which]()

    r32, r64 = run(np.float32), run(np.float64)
    assert r32.dtype == np.float32
    assert relative_error(r32, r64) < 1e-5


ALL_OPS = {
    "sub_fwd": lambda x, k, g, **kw: sub_fwd(x, k, **kw),
    "sub_bwd": lambda x, k, g, **kw: sub_bwd(x, k, g, **kw),
    "cn_fwd": lambda x, k, g, **kw: cn_fwd(x, k, **kw),
    "cn_bwd": lambda x, k, g, **kw: cn_bwd(x, k, g, **kw),
}


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_deterministic_and_thread_independent(rng, op):
    f = ALL_OPS[op]
    x = rng.standard_normal((6, 3, 24, 21)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    k = KERNELS["gauss1d"].astype(np.float32)
    a = f(x, k, g, n_threads=2)
    b = f(x, k, g, n_threads=2)
    c = f(x, k, g, n_threads=1)
    assert a.tobytes() == b.tobytes()
    # Per-sample arithmetic does not depend on the thread running it.
    np.testing.assert_array_equal(a, c)


# --- Layouts, edge cases, validation ------------------------------------------------------

@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_non_contiguous_and_readonly_inputs(rng, op):
    f = ALL_OPS[op]
    x = rng.standard_normal((3, 2, 7, 8))
    g = rng.standard_normal(x.shape)
    k = KERNELS["rand2d"]
    ref = f(x, k, g)
    np.testing.assert_array_equal(f(np.asfortranarray(x), np.asfortranarray(k),
                                    np.asfortranarray(g)), ref)
    xf, gf = x[..., ::-1], g[..., ::-1]
    np.testing.assert_array_equal(f(xf, k[:, ::-1], gf),
                                  f(xf.copy(), k[:, ::-1].copy(), gf.copy()))
    big = rng.standard_normal((6, 2, 9, 8))
    xs, gs = big[::2, :, 1:], big[1::2, :, :-1]
    np.testing.assert_array_equal(f(xs, k, gs), f(xs.copy(), k, gs.copy()))
    ro = [a.copy() for a in (x, k, g)]
    for a in ro:
        a.flags.writeable = False
    np.testing.assert_array_equal(f(*ro), ref)


@pytest.mark.parametrize("op", sorted(ALL_OPS))
@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 0, 5, 5), (2, 3, 0, 4), (2, 3, 4, 0)])
def test_empty(op, shape):
    x = np.zeros(shape, dtype=np.float32)
    y = ALL_OPS[op](x, KERNELS["gauss1d"].astype(np.float32), x.copy())
    assert y.shape == shape and y.dtype == np.float32


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_nan_and_inf_do_not_crash(rng, op):
    x = rng.standard_normal((2, 2, 6, 6))
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 0, 0] = np.inf
    y = ALL_OPS[op](x, KERNELS["gauss1d"], x.copy())
    assert y.shape == x.shape and not np.isfinite(y).all()


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_out_buffer(rng, op):
    f = ALL_OPS[op]
    x = rng.standard_normal((2, 3, 5, 6))
    g = rng.standard_normal(x.shape)
    k = KERNELS["gauss1d"]
    out = np.empty_like(x)
    assert f(x, k, g, out=out) is out
    np.testing.assert_array_equal(out, f(x, k, g))
    with pytest.raises(ValueError, match="out must have shape"):
        f(x, k, g, out=np.empty((2, 3, 5, 5)))
    with pytest.raises(TypeError, match="out must have dtype float64"):
        f(x, k, g, out=np.empty(x.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        f(x, k, g, out=np.empty(x.shape, order="F"))
    with pytest.raises(ValueError, match="out must not share memory"):
        f(x, k, g, out=x)
    if op.endswith("bwd"):
        with pytest.raises(ValueError, match="out must not share memory"):
            f(x, k, g, out=g)


@pytest.mark.parametrize("op", sorted(ALL_OPS))
def test_validation(op):
    f = ALL_OPS[op]
    name = {"sub_fwd": sub_fwd, "sub_bwd": sub_bwd, "cn_fwd": cn_fwd,
            "cn_bwd": cn_bwd}[op].__name__
    x = np.zeros((2, 1, 5, 5))
    k = np.ones(3)
    with pytest.raises(TypeError, match=f"{name}: x must be a numpy.ndarray"):
        f(x.tolist(), k, x)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\); got shape \(5, 5\)"):
        f(x[0, 0], k, x)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64; got int64"):
        f(x.astype(np.int64), k, x)
    with pytest.raises(TypeError, match="kernel must be a numpy.ndarray"):
        f(x, [1.0, 1.0, 1.0], x)
    with pytest.raises(ValueError, match=r"kernel must be 1-D or 2-D \(K,\) or \(KH, KW\); "
                                         r"got shape \(3, 3, 3\)"):
        f(x, np.ones((3, 3, 3)), x)
    with pytest.raises(ValueError, match="kernel must be 1-D or 2-D"):
        f(x, np.array(1.0), x)
    with pytest.raises(TypeError, match=r"kernel must have the same dtype as x \(float64\); "
                                        "got float32"):
        f(x, k.astype(np.float32), x)
    with pytest.raises(ValueError, match=r"kernel sizes must be odd; got shape \(4,\)"):
        f(x, np.ones(4), x)
    with pytest.raises(ValueError, match=r"kernel sizes must be odd; got shape \(3, 2\)"):
        f(x, np.ones((3, 2)), x)
    with pytest.raises(ValueError, match="kernel must be finite and non-negative"):
        f(x, np.array([1.0, -0.5, 1.0]), x)
    with pytest.raises(ValueError, match="kernel must be finite and non-negative"):
        f(x, np.array([1.0, np.nan, 1.0]), x)
    with pytest.raises(ValueError, match="kernel centre tap must be > 0; got 0.0"):
        f(x, np.array([1.0, 0.0, 1.0]), x)
    with pytest.raises(ValueError, match="kernel centre tap must be > 0"):
        f(x, np.zeros((3, 3)), x)
    if op.endswith("bwd"):
        with pytest.raises(TypeError, match="grad_out must be a numpy.ndarray"):
            f(x, k, None)
        with pytest.raises(ValueError, match="grad_out must be 4-D"):
            f(x, k, x[0])
        with pytest.raises(TypeError, match=r"grad_out must have the same dtype as x"):
            f(x, k, x.astype(np.float32))
        with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 1, 5, 5\) "
                                             r"\(same as x\); got shape \(2, 1, 5, 4\)"):
            f(x, k, x[..., :4])
    with pytest.raises(ValueError, match="n_threads must be a non-zero integer"):
        f(x, k, x, n_threads=0)


@pytest.mark.parametrize("fn", [cn_fwd, cn_bwd])
def test_threshold_validation(fn):
    x = np.zeros((1, 1, 3, 3))
    args = (x, np.ones(3)) if fn is cn_fwd else (x, np.ones(3), x)
    with pytest.raises(ValueError, match=f"{fn.__name__}: threshold must be > 0.0; got 0.0"):
        fn(*args, 0.0)
    with pytest.raises(ValueError, match="threshold must be > 0.0; got -1.0"):
        fn(*args, -1.0)
    with pytest.raises(ValueError, match="threshold must be finite"):
        fn(*args, np.nan)
    with pytest.raises(TypeError, match="threshold must be a real number"):
        fn(*args, "1e-4")
