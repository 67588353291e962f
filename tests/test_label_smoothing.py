"""Label smoothing of the NLL loss (functional.nll_loss_* and nn.NLLLoss / make_loss)."""
import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv.functional import log_softmax_forward, nll_loss_backward, nll_loss_forward
from tests.gradcheck import check_vjp, numerical_gradient, relative_error

DTYPES = [np.float32, np.float64]
CASES = [(1, 1), (1, 10), (7, 3), (128, 10), (300, 150)]    # (N, K); the last runs in parallel
EPS = [0.0, 0.1, 0.5, 0.95]


def reference(logp, target, eps):
    """PyTorch's definition, written out in float64."""
    logp = np.asarray(logp, dtype=np.float64)
    n, k = logp.shape
    nll = -logp[np.arange(n), target]
    smooth = -logp.mean(axis=1)
    return float(np.mean((1 - eps) * nll + eps * smooth))


def reference_grad(logp, target, eps, grad_out=1.0):
    n, k = logp.shape
    grad = np.full((n, k), -eps / k)
    grad[np.arange(n), target] -= 1 - eps
    return grad * grad_out / n


def _data(rng, n, k, dtype):
    x = rng.standard_normal((n, k)) * 3
    logp = log_softmax_forward(x.astype(dtype))
    return x, logp, rng.integers(0, k, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nk", CASES)
@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_forward_and_backward_match_the_formula(dtype, nk, eps, n_threads, rng):
    _, logp, t = _data(rng, *nk, dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    loss = nll_loss_forward(logp, t, label_smoothing=eps, n_threads=n_threads)
    assert loss == pytest.approx(reference(logp, t, eps), rel=tol, abs=tol)
    grad = nll_loss_backward(logp, t, 0.7, label_smoothing=eps, n_threads=n_threads)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, reference_grad(logp, t, eps, 0.7), rtol=tol, atol=tol)


def test_zero_smoothing_is_plain_nll_bit_for_bit(rng):
    _, logp, t = _data(rng, 64, 10, np.float32)
    crit = nn.NLLLoss(label_smoothing=0.0)
    assert crit.forward(logp, t) == nn.NLLLoss().forward(logp, t) == nll_loss_forward(logp, t)
    assert crit.backward().tobytes() == nll_loss_backward(logp, t).tobytes()


@pytest.mark.parametrize("nk", [(3, 4), (5, 10), (1, 2)])
@pytest.mark.parametrize("eps", [0.1, 0.6])
def test_gradcheck_float64(nk, eps, rng):
    _, logp, t = _data(rng, *nk, np.float64)
    check_vjp(lambda z: np.array(nll_loss_forward(z, t, label_smoothing=eps)),
              lambda z, y, g: nll_loss_backward(z, t, float(g), label_smoothing=eps),
              logp, rng)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_criterion_gradcheck_through_log_softmax(eps, rng):
    """The whole head: LogSoftmax then NLLLoss(label_smoothing) against central differences
    of the loss in the raw scores."""
    x = rng.standard_normal((4, 6))
    t = np.array([0, 5, 2, 2])
    head, crit = nn.LogSoftmax(), nn.NLLLoss(label_smoothing=eps)
    crit.forward(head.forward(x), t)
    analytic = head.backward(crit.backward())
    numeric = numerical_gradient(lambda z: crit.forward(head.forward(z), t), x)
    assert relative_error(analytic, numeric) < 1e-7


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_matches_torch(eps, rng):
    torch = pytest.importorskip("torch")
    x, logp, t = _data(rng, 33, 10, np.float64)
    xt = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(xt, torch.tensor(t), label_smoothing=eps)
    expected.backward()
    head, crit = nn.LogSoftmax(), nn.NLLLoss(label_smoothing=eps)
    loss = crit.forward(head.forward(x), t)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(head.backward(crit.backward()), xt.grad.numpy(),
                               rtol=1e-10, atol=1e-14)
    if eps == 0.0:
        nll = torch.nn.functional.nll_loss(torch.tensor(logp), torch.tensor(t))
        assert nll_loss_forward(logp, t) == pytest.approx(nll.item(), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_equals_validated_path_and_follows_changes(dtype, rng):
    _, logp, t = _data(rng, 20, 10, dtype)
    crit = nn.NLLLoss(label_smoothing=0.2)
    first = [(crit.forward(logp, t), crit.backward().copy()) for _ in range(3)]
    assert all(f[0] == first[0][0] and f[1].tobytes() == first[0][1].tobytes() for f in first)
    assert first[0][0] == nll_loss_forward(logp, t, label_smoothing=0.2)
    crit.label_smoothing = 0.0                  # a planned call must notice the change
    assert crit.forward(logp, t) == nll_loss_forward(logp, t)
    assert crit.backward().tobytes() == nll_loss_backward(logp, t).tobytes()


def test_same_bits_on_any_thread_count(rng):
    _, logp, t = _data(rng, 5000, 10, np.float32)
    before = fastconv.get_thread_setting()
    try:
        results = []
        for n in (1, 2, 3, 4):
            fastconv.set_num_threads(n)
            crit = nn.NLLLoss(label_smoothing=0.1)
            results.append((crit.forward(logp, t), crit.backward().tobytes()))
    finally:
        fastconv.set_num_threads(before)
    assert all(r == results[0] for r in results)


def test_config_and_make_loss():
    crit = nn.make_loss("nll", label_smoothing=0.1)
    assert isinstance(crit, nn.NLLLoss) and crit.label_smoothing == 0.1
    assert crit.config() == {"name": "nll", "label_smoothing": 0.1}
    assert repr(crit) == "NLLLoss(label_smoothing=0.1)"
    again = nn.make_loss(crit.config())
    assert again.label_smoothing == 0.1
    # The default stays the plain criterion, with the config it always had.
    assert nn.make_loss("nll").config() == {"name": "nll"}
    assert repr(nn.make_loss("nll")) == "NLLLoss()"
    assert nn.make_loss({"name": "margin", "margin": 0.5}).margin == 0.5
    assert nn.make_loss("mse").config() == {"name": "mse"}


@pytest.mark.parametrize("call, error, match", [
    (lambda: nn.NLLLoss(label_smoothing=1.0), ValueError,
     "NLLLoss: label_smoothing must be < 1.0; got 1.0"),
    (lambda: nn.NLLLoss(label_smoothing=-0.1), ValueError,
     "NLLLoss: label_smoothing must be >= 0.0; got -0.1"),
    (lambda: nn.NLLLoss(label_smoothing="0.1"), TypeError,
     "NLLLoss: label_smoothing must be a real number; got str"),
    (lambda: nn.NLLLoss(label_smoothing=float("nan")), ValueError,
     "NLLLoss: label_smoothing must be finite; got nan"),
    (lambda: nn.make_loss("mse", label_smoothing=0.1), TypeError,
     "make_loss: loss 'mse' takes no options; got label_smoothing"),
    (lambda: nn.make_loss("nll", smoothing=0.1), TypeError,
     "make_loss: loss 'nll' takes options label_smoothing; got smoothing"),
    (lambda: nn.make_loss({"label_smoothing": 0.1}), ValueError,
     "make_loss: a loss config must have a 'name'"),
    (lambda: nn.make_loss("l1"), ValueError, "unknown loss 'l1'"),
    (lambda: nll_loss_forward(np.zeros((2, 3)), np.zeros(2, int), label_smoothing=1.5),
     ValueError, "nll_loss_forward: label_smoothing must be < 1.0; got 1.5"),
    (lambda: nll_loss_backward(np.zeros((2, 3)), np.zeros(2, int), label_smoothing=None),
     TypeError, "nll_loss_backward: label_smoothing must be a real number; got NoneType"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_empty_batch(rng):
    assert nll_loss_forward(np.zeros((0, 4)), np.zeros(0, int), label_smoothing=0.3) == 0.0
    grad = nll_loss_backward(np.zeros((0, 4)), np.zeros(0, int), label_smoothing=0.3)
    assert grad.shape == (0, 4)
