"""Sequential runs an activation followed by max pooling as one fused pair.

The fused pair pools first and applies the activation to the pooled values; these tests
hold it to the layer-by-layer composition, to finite differences, and check that mixing
fused and individual calls never uses stale state.
"""
import numpy as np
import pytest

from fastconv import nn

from .gradcheck import numerical_gradient, relative_error

ACTIVATIONS = [nn.Tanh, nn.Sigmoid, nn.ReLU]


def _net(act, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, dtype=dtype, rng=rng), act(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3, dtype=dtype, rng=rng))


def _layer_by_layer(model, x, g):
    """Forward and backward one layer at a time: never fused."""
    outs = [x]
    for m in model.layers:
        outs.append(m.forward(outs[-1]))
    for i in range(len(model.layers) - 1, -1, -1):
        g = model.layers[i].backward(g)
    return outs[-1], g


def _sequential(model, x, g):
    y = model.forward(x)
    return y, model.backward(g)


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_pair_matches_layer_by_layer(act, dtype, rng):
    x = rng.standard_normal((5, 2, 12, 12)).astype(dtype)
    g = rng.standard_normal((5, 3)).astype(dtype)
    ref_model, model = _net(act, dtype), _net(act, dtype)
    model.forward(x)                      # the first call validates and plans
    for m in (ref_model, model):
        m.zero_grad()
    y_ref, gx_ref = _layer_by_layer(ref_model, x, g)
    y, gx = _sequential(model, x, g)
    assert 1 in model._fused
    assert model.layers[1]._y is None     # no full-size activation output was kept
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, gx_ref, rtol=tol, atol=tol)
    for a, b in zip(model.grads(), ref_model.grads()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fused_pair_gradient_matches_finite_differences(act, rng):
    model = _net(act, np.float64)
    x = rng.standard_normal((2, 2, 12, 12))
    w = rng.standard_normal((2, 3))
    params, grads = model.flat_parameters()
    model.forward(x)                      # plan, so that every later call is fused

    def loss(p=None, xin=None):
        if p is not None:
            params[...] = p
        return float(np.sum(model.forward(x if xin is None else xin) * w))

    p0 = params.copy()
    model.zero_grad()
    loss()
    assert 1 in model._fused
    gx = model.backward(w)
    analytic = grads.copy()
    numeric = numerical_gradient(loss, p0)
    params[...] = p0
    assert relative_error(analytic, numeric) < 1e-6
    assert relative_error(gx, numerical_gradient(lambda z: loss(xin=z), x)) < 1e-6


def test_no_fusion_for_other_pairs(rng):
    x = rng.standard_normal((2, 1, 8, 8))
    for model in (nn.Sequential(nn.Tanh(), nn.LPPool2d(2, 2)),
                  nn.Sequential(nn.LogSoftmax(), nn.MaxPool2d(2)),
                  nn.Sequential(nn.MaxPool2d(2), nn.Tanh())):
        for _ in range(2):
            model.forward(x)
            model.backward(np.ones((2, 1, 4, 4)))
        assert not model._fused


def test_individual_calls_after_a_fused_forward(rng):
    model = _net(nn.Tanh, np.float64)
    x = rng.standard_normal((3, 2, 12, 12))
    g = rng.standard_normal((3, 3))
    model.forward(x)
    y = model.forward(x)
    assert 1 in model._fused
    # The activation kept no full output: its own backward says so instead of guessing.
    with pytest.raises(RuntimeError, match="fused"):
        model.layers[1].backward(np.ones((3, 4, 10, 10)))
    # Layers called one by one after a fused Sequential.forward: Sequential.backward
    # notices and runs them unfused, with the state of those last calls.
    ref = _net(nn.Tanh, np.float64)
    y_ref, gx_ref = _layer_by_layer(ref, x, g)
    h = x
    for m in model.layers:
        h = m.forward(h)
    model.zero_grad()
    gx = model.backward(g)
    np.testing.assert_allclose(h, y_ref, rtol=1e-14)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(y, y_ref, rtol=1e-14)


def test_fused_backward_accepts_a_non_contiguous_gradient(rng):
    model = nn.Sequential(nn.Tanh(), nn.MaxPool2d(2))
    ref = nn.Sequential(nn.Tanh(), nn.MaxPool2d(2))
    x = rng.standard_normal((2, 3, 8, 8))
    g = np.asfortranarray(rng.standard_normal((2, 3, 4, 4)))
    model.forward(x)
    model.forward(x)
    assert 0 in model._fused
    np.testing.assert_allclose(model.backward(g), _layer_by_layer(ref, x, g)[1], rtol=1e-14,
                               atol=1e-14)
