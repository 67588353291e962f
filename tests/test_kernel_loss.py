"""NLL, fused log-softmax + NLL, MSE and margin losses against NumPy references."""
import numpy as np
import pytest

import fastconv.functional
from fastconv.functional._loss import (
    log_softmax_nll_backward, log_softmax_nll_forward, margin_loss_backward,
    margin_loss_forward, mse_loss_backward, mse_loss_forward, nll_loss_backward,
    nll_loss_forward)
from tests.gradcheck import check_vjp, relative_error

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]
NK = [(1, 1), (1, 5), (4, 1), (7, 3), (5, 10)]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


# ---------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------

def ref_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def ref_nll(logp, t):
    return -np.mean(np.asarray(logp, np.float64)[np.arange(len(t)), t])


def ref_margin(x, t, margin):
    """Torch7 MultiMarginCriterion (p = 1, sizeAverage), written as its C loop."""
    x = np.asarray(x, np.float64)
    n, k = x.shape
    total = 0.0
    for i in range(n):
        s = 0.0
        for j in range(k):
            if j != t[i]:
                z = margin - x[i, t[i]] + x[i, j]
                if z > 0:
                    s += z
        total += s / k
    return total / n


def ref_margin_grad(x, t, margin, g):
    x = np.asarray(x, np.float64)
    n, k = x.shape
    z = margin - x[np.arange(n), t][:, None] + x
    active = (z > 0)
    active[np.arange(n), t] = False
    grad = active * (g / (n * k))
    grad[np.arange(n), t] = -active.sum(axis=1) * (g / (n * k))
    return grad


def onehot(t, k):
    out = np.zeros((len(t), k))
    out[np.arange(len(t)), t] = 1
    return out


def scores_away_from_kinks(rng, n, k, margin):
    """Scores whose hinge arguments z all stay >= 0.05 from the kink at 0."""
    while True:
        x = rng.standard_normal((n, k))
        t = rng.integers(0, k, n)
        z = margin - x[np.arange(n), t][:, None] + x
        z[np.arange(n), t] = 1.0
        if np.all(np.abs(z) > 0.05):
            return x, t


# ---------------------------------------------------------------------------------------
# NLL and the fused log-softmax + NLL
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("nk", NK + [(4001, 11)])
def test_nll_matches_reference(dtype, n_threads, nk, rng):
    n, k = nk
    logp = ref_log_softmax(rng.standard_normal(nk)).astype(dtype)
    t = rng.integers(0, k, n)
    loss = nll_loss_forward(logp, t, n_threads=n_threads)
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref_nll(logp, t), rel=1e-12)
    grad = nll_loss_backward(logp, t, 0.5, n_threads=n_threads)
    assert grad.dtype == dtype
    np.testing.assert_array_equal(grad, (-0.5 / n * onehot(t, k)).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("nk", NK + [(4001, 11)])
def test_log_softmax_nll_matches_reference(dtype, n_threads, nk, rng):
    n, k = nk
    x = (3 * rng.standard_normal(nk)).astype(dtype)
    t = rng.integers(0, k, n).astype(np.int32)
    loss, logp = log_softmax_nll_forward(x, t, n_threads=n_threads)
    assert isinstance(loss, float) and logp.dtype == dtype
    np.testing.assert_allclose(logp, ref_log_softmax(x), rtol=TOL[dtype], atol=TOL[dtype] * 10)
    assert loss == pytest.approx(ref_nll(ref_log_softmax(x), t), rel=TOL[dtype])
    grad = log_softmax_nll_backward(logp, t, 2.0, n_threads=n_threads)
    expected = (np.exp(logp.astype(np.float64)) - onehot(t, k)) / n * 2.0
    np.testing.assert_allclose(grad, expected, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("nk", [(1, 1), (1, 4), (3, 1), (3, 5)])
def test_nll_gradcheck(nk, rng):
    t = rng.integers(0, nk[1], nk[0])
    logp = rng.standard_normal(nk)
    check_vjp(lambda z: np.array(nll_loss_forward(z, t)),
              lambda z, y, g: nll_loss_backward(z, t, float(g)), logp, rng)


@pytest.mark.parametrize("nk", [(1, 1), (1, 4), (3, 1), (3, 5), (2, 7)])
def test_log_softmax_nll_gradcheck(nk, rng):
    t = rng.integers(0, nk[1], nk[0])
    x = rng.standard_normal(nk)
    check_vjp(lambda z: np.array(log_softmax_nll_forward(z, t)[0]),
              lambda z, y, g: log_softmax_nll_backward(log_softmax_nll_forward(z, t)[1],
                                                       t, float(g)), x, rng)


def test_log_softmax_nll_is_stable_for_huge_scores():
    x = np.array([[1000.0, 0.0, -1000.0], [-5e3, -5e3, -5e3]])
    loss, logp = log_softmax_nll_forward(x, np.array([2, 1]))
    assert np.isfinite(loss)
    assert loss == pytest.approx((2000.0 + np.log(3)) / 2, rel=1e-12)
    np.testing.assert_allclose(logp[1], -np.log(3))


# ---------------------------------------------------------------------------------------
# MSE
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4, 5), ((1 << 16) + 5,)])
def test_mse_matches_reference(dtype, n_threads, shape, rng):
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    d = x.astype(np.float64) - t
    loss = mse_loss_forward(x, t, n_threads=n_threads)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean(d * d), rel=1e-12)
    grad = mse_loss_backward(x, t, 3.0, n_threads=n_threads)
    np.testing.assert_allclose(grad, 2 * d / x.size * 3.0, rtol=TOL[dtype], atol=1e-30)


@pytest.mark.parametrize("shape", [(1,), (5,), (2, 3), (1, 2, 1, 3)])
def test_mse_gradcheck(shape, rng):
    t = rng.standard_normal(shape)
    check_vjp(lambda z: np.array(mse_loss_forward(z, t)),
              lambda z, y, g: mse_loss_backward(z, t, float(g)), rng.standard_normal(shape), rng)


# ---------------------------------------------------------------------------------------
# Margin (multi-class hinge)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("nk", NK + [(3001, 13)])
@pytest.mark.parametrize("margin", [1.0, 0.3, 2.5])
def test_margin_matches_torch_formula(dtype, n_threads, nk, margin, rng):
    n, k = nk
    x = rng.standard_normal(nk).astype(dtype)
    t = rng.integers(0, k, n)
    loss = margin_loss_forward(x, t, margin, n_threads=n_threads)
    assert isinstance(loss, float)
    if n * k < 1000:
        assert loss == pytest.approx(ref_margin(x, t, margin), rel=1e-12, abs=1e-15)
    grad = margin_loss_backward(x, t, margin, 0.7, n_threads=n_threads)
    np.testing.assert_allclose(grad, ref_margin_grad(x, t, margin, 0.7), rtol=TOL[dtype],
                               atol=1e-30)


@pytest.mark.parametrize("nk", [(1, 2), (1, 5), (3, 4), (4, 7)])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_margin_gradcheck(nk, margin, rng):
    x, t = scores_away_from_kinks(rng, *nk, margin)
    check_vjp(lambda z: np.array(margin_loss_forward(z, t, margin)),
              lambda z, y, g: margin_loss_backward(z, t, margin, float(g)), x, rng)


def test_margin_single_class_is_zero():
    x = np.array([[3.0], [-1.0]])
    t = np.array([0, 0])
    assert margin_loss_forward(x, t) == 0.0
    np.testing.assert_array_equal(margin_loss_backward(x, t), 0.0)


def test_margin_kink_has_zero_gradient():
    x = np.array([[1.0, 0.0]])          # z = 1 - 1 + 0 = 0 exactly for class 1
    t = np.array([0])
    assert margin_loss_forward(x, t) == 0.0
    np.testing.assert_array_equal(margin_loss_backward(x, t), [[0.0, 0.0]])


# ---------------------------------------------------------------------------------------
# Cross-cutting properties
# ---------------------------------------------------------------------------------------

def _losses(rng, dtype, n=6, k=5):
    x = rng.standard_normal((n, k)).astype(dtype)
    t = rng.integers(0, k, n)
    tgt = rng.standard_normal((n, k)).astype(dtype)
    return x, t, tgt


def test_float32_agrees_with_float64(rng):
    x, t, tgt = _losses(rng, np.float64)
    x32, tgt32 = x.astype(np.float32), tgt.astype(np.float32)
    lp64 = log_softmax_nll_forward(x, t)[1]
    lp32 = log_softmax_nll_forward(x32, t)[1]
    pairs = [
        (log_softmax_nll_forward(x32, t)[0], log_softmax_nll_forward(x, t)[0]),
        (log_softmax_nll_backward(lp32, t), log_softmax_nll_backward(lp64, t)),
        (nll_loss_forward(x32, t), nll_loss_forward(x, t)),
        (mse_loss_forward(x32, tgt32), mse_loss_forward(x, tgt)),
        (mse_loss_backward(x32, tgt32), mse_loss_backward(x, tgt)),
        (margin_loss_forward(x32, t), margin_loss_forward(x, t)),
        (margin_loss_backward(x32, t), margin_loss_backward(x, t)),
    ]
    for a, b in pairs:
        assert relative_error(a, b) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_bitwise_independent_of_threads(dtype, rng):
    """Per-row / per-chunk partials summed in index order: 1 and 2 threads agree bitwise."""
    x = rng.standard_normal((5001, 10)).astype(dtype)
    t = rng.integers(0, 10, 5001)
    tgt = rng.standard_normal(x.shape).astype(dtype)
    runs = {}
    for nt in (1, 2, 2):
        loss, logp = log_softmax_nll_forward(x, t, n_threads=nt)
        runs.setdefault("fused", []).append((loss, logp))
        runs.setdefault("mse", []).append(mse_loss_forward(x, tgt, n_threads=nt))
        runs.setdefault("margin", []).append(margin_loss_forward(x, t, n_threads=nt))
        runs.setdefault("margin_b", []).append(margin_loss_backward(x, t, n_threads=nt))
        runs.setdefault("fused_b", []).append(log_softmax_nll_backward(logp, t, n_threads=nt))
        runs.setdefault("nll_b", []).append(nll_loss_backward(logp, t, n_threads=nt))
    for key, vals in runs.items():
        for v in vals[1:]:
            if key == "fused":
                assert v[0] == vals[0][0]
                np.testing.assert_array_equal(v[1], vals[0][1])
            else:
                np.testing.assert_array_equal(v, vals[0])


@pytest.mark.parametrize("k", [0, 4])
def test_empty_batch_returns_zero_loss_and_empty_grad(k):
    x = np.empty((0, k))
    t = np.empty(0, dtype=np.int64)
    assert nll_loss_forward(x, t) == 0.0
    assert nll_loss_backward(x, t).shape == (0, k)
    loss, logp = log_softmax_nll_forward(x, t)
    assert loss == 0.0 and logp.shape == (0, k)
    assert log_softmax_nll_backward(x, t).shape == (0, k)
    assert margin_loss_forward(x, t) == 0.0
    assert margin_loss_backward(x, t).shape == (0, k)
    assert mse_loss_forward(x, x.copy()) == 0.0
    assert mse_loss_backward(x, x.copy()).shape == (0, k)


def test_nan_inputs_give_nan_loss_without_crash():
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])
    t = np.array([0, 2])
    assert np.isnan(log_softmax_nll_forward(x, t)[0])
    assert np.isnan(nll_loss_forward(x, np.array([1, 0])))
    assert np.isnan(margin_loss_forward(x, t))
    assert np.isnan(mse_loss_forward(x, np.zeros_like(x)))
    assert np.all(np.isfinite(margin_loss_backward(x, t)))
    assert np.isnan(log_softmax_nll_backward(log_softmax_nll_forward(x, t)[1], t)[0]).all()
    assert np.isnan(mse_loss_backward(x, np.zeros_like(x), float("nan"))).all()


def _variants(x):
    yield np.asfortranarray(x)
    yield np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    big = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    big[:, ::2] = x
    yield big[:, ::2]


def test_non_contiguous_and_read_only_inputs(rng):
    x, t, tgt = _losses(rng, np.float64)
    logp = log_softmax_nll_forward(x, t)[1]
    calls = [
        lambda a, b: log_softmax_nll_forward(a, t)[0],
        lambda a, b: log_softmax_nll_forward(a, t)[1],
        lambda a, b: log_softmax_nll_backward(a, t),
        lambda a, b: nll_loss_forward(a, t),
        lambda a, b: nll_loss_backward(a, t),
        lambda a, b: margin_loss_forward(a, t),
        lambda a, b: margin_loss_backward(a, t),
        lambda a, b: mse_loss_forward(a, b),
        lambda a, b: mse_loss_backward(a, b),
    ]
    for call in calls:
        expected = call(logp, tgt)
        for a, b in zip(_variants(logp), _variants(tgt)):
            np.testing.assert_array_equal(call(a, b), expected)
        a, b, tr = logp.copy(), tgt.copy(), t[::-1].copy()[::-1]
        a.flags.writeable = b.flags.writeable = tr.flags.writeable = False
        np.testing.assert_array_equal(call(a, b), expected)
    np.testing.assert_array_equal(log_softmax_nll_backward(logp, t[::-1].copy()[::-1]),
                                  log_softmax_nll_backward(logp, t))


def test_out_buffers(rng):
    x, t, tgt = _losses(rng, np.float64)
    for call in (lambda out: log_softmax_nll_forward(x, t, out=out)[1],
                 lambda out: log_softmax_nll_backward(x, t, out=out),
                 lambda out: nll_loss_backward(x, t, out=out),
                 lambda out: margin_loss_backward(x, t, out=out),
                 lambda out: mse_loss_backward(x, tgt, out=out)):
        out = np.empty_like(x)
        assert call(out) is out
        with pytest.raises(ValueError, match="out must have shape"):
            call(np.empty((x.shape[0], x.shape[1] + 1)))
        with pytest.raises(TypeError, match="out must have dtype"):
            call(np.empty(x.shape, np.float32))
        with pytest.raises(ValueError, match="share memory"):
            call(x)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

CLASS_LOSSES = [
    ("nll_loss_forward", "logp", lambda x, t: nll_loss_forward(x, t)),
    ("nll_loss_backward", "logp", lambda x, t: nll_loss_backward(x, t)),
    ("log_softmax_nll_forward", "x", lambda x, t: log_softmax_nll_forward(x, t)),
    ("log_softmax_nll_backward", "logp", lambda x, t: log_softmax_nll_backward(x, t)),
    ("margin_loss_forward", "x", lambda x, t: margin_loss_forward(x, t)),
    ("margin_loss_backward", "x", lambda x, t: margin_loss_backward(x, t)),
]


@pytest.mark.parametrize("fn, arg, call", CLASS_LOSSES)
def test_class_loss_validation(fn, arg, call):
    x = np.zeros((3, 4))
    t = np.array([0, 1, 3])
    with pytest.raises(TypeError, match=f"{fn}: {arg} must be a numpy.ndarray"):
        call(x.tolist(), t)
    with pytest.raises(ValueError, match=rf"{fn}: {arg} must be 2-D \(N, K\)"):
        call(np.zeros(4), t)
    with pytest.raises(TypeError, match=f"{fn}: {arg} must have dtype float32 or float64"):
        call(x.astype(np.int64), t)
    with pytest.raises(TypeError, match=f"{fn}: target must be a numpy.ndarray"):
        call(x, [0, 1, 3])
    with pytest.raises(ValueError, match=f"{fn}: target must be 1-D"):
        call(x, t[:, None])
    with pytest.raises(TypeError, match=f"{fn}: target must have an integer dtype"):
        call(x, t.astype(np.float64))
    with pytest.raises(ValueError, match=rf"{fn}: target must have shape \(3,\)"):
        call(x, t[:2])
    with pytest.raises(ValueError, match=rf"{fn}: target labels must lie in \[0, 4\); got 4"):
        call(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 4\); got -1"):
        call(x, np.array([0, -1, 1]))


@pytest.mark.parametrize("call, fn", [
    (lambda g: nll_loss_backward(np.zeros((2, 3)), np.array([0, 1]), g), "nll_loss_backward"),
    (lambda g: log_softmax_nll_backward(np.zeros((2, 3)), np.array([0, 1]), g),
     "log_softmax_nll_backward"),
    (lambda g: margin_loss_backward(np.zeros((2, 3)), np.array([0, 1]), 1.0, g),
     "margin_loss_backward"),
    (lambda g: mse_loss_backward(np.zeros(3), np.zeros(3), g), "mse_loss_backward"),
])
def test_grad_out_must_be_real(call, fn):
    with pytest.raises(TypeError, match=f"{fn}: grad_out must be a real number"):
        call("1")
    with pytest.raises(TypeError, match="grad_out must be a real number"):
        call(np.ones(1))


@pytest.mark.parametrize("margin, exc", [(np.inf, ValueError), (np.nan, ValueError),
                                         (None, TypeError)])
def test_margin_must_be_finite_real(margin, exc):
    x, t = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(exc, match="margin_loss_forward: margin must be"):
        margin_loss_forward(x, t, margin)
    with pytest.raises(exc, match="margin_loss_backward: margin must be"):
        margin_loss_backward(x, t, margin)


@pytest.mark.parametrize("f", [mse_loss_forward, mse_loss_backward])
def test_mse_validation(f):
    fn = f.__name__
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match=f"{fn}: x must be a numpy.ndarray"):
        f(1.0, x)
    with pytest.raises(ValueError, match=f"{fn}: x must be at least 1-D"):
        f(np.zeros(()), np.zeros(()))
    with pytest.raises(TypeError, match=f"{fn}: target must be a numpy.ndarray"):
        f(x, x.tolist())
    with pytest.raises(TypeError, match=f"{fn}: target must have the same dtype as x"):
        f(x, x.astype(np.float32))
    with pytest.raises(ValueError, match=rf"{fn}: target must have shape \(2, 3\)"):
        f(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n_threads must be a non-zero"):
        f(x, x.copy(), n_threads=0)


def test_exported_from_fastconv_functional():
    for f in (nll_loss_forward, nll_loss_backward, log_softmax_nll_forward,
              log_softmax_nll_backward, mse_loss_forward, mse_loss_backward,
              margin_loss_forward, margin_loss_backward):
        assert getattr(fastconv.functional, f.__name__) is f


def test_labels_in_range_kernel():
    from fastconv._kernels._loss import labels_in_range
    t = np.array([0, 3, 9, 4], dtype=np.intp)
    assert labels_in_range(t, 10)
    assert not labels_in_range(t, 9)
    assert not labels_in_range(np.array([0, -1], dtype=np.intp), 10)
    assert labels_in_range(np.array([], dtype=np.intp), 1)
