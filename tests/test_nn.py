"""Layers, containers, model builders and model files."""
import numpy as np
import pytest

from fastconv import nn
from fastconv.serialization import load_model, save_model

from .gradcheck import numerical_gradient, relative_error


def small_net(rng_seed=0):
    """Every parametrized and stochastic layer type, on 12x12 inputs, small enough for FD."""
    return nn.Sequential(
        nn.RandomRotation(0.3),
        nn.Conv2d(1, 3, 3, padding=1, rng=rng_seed, dtype=np.float64),
        nn.Tanh(),
        nn.LPPool2d(2, 2),
        nn.SubtractiveNormalization(kernel=np.array([0.25, 0.5, 0.25])),
        nn.Conv2d(3, 4, 3, stride=1, rng=rng_seed + 1, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.ContrastiveNormalization(kernel=np.array([0.3, 0.4, 0.3])),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(16, 6, rng=rng_seed + 2, dtype=np.float64),
        nn.Sigmoid(),
        nn.Linear(6, 5, rng=rng_seed + 3, dtype=np.float64),
        nn.LogSoftmax(),
    )


def test_whole_network_gradient_matches_finite_differences(rng):
    model = small_net()
    x = rng.standard_normal((3, 1, 12, 12))
    target = np.array([0, 3, 4])
    crit = nn.NLLLoss()
    params, grads = model.flat_parameters()

    def loss_at(p=None, xin=None):
        if p is not None:
            params[...] = p
        # Same dropout mask and rotation angles at every evaluation.
        model.set_rng(np.random.default_rng(7))
        return crit.forward(model.forward(x if xin is None else xin), target)

    p0 = params.copy()
    model.zero_grad()
    loss_at()
    grad_x = model.backward(crit.backward())
    analytic = grads.copy()
    numeric = numerical_gradient(lambda p: loss_at(p), p0)
    params[...] = p0
    assert relative_error(analytic, numeric) < 1e-6
    numeric_x = numerical_gradient(lambda z: loss_at(xin=z), x)
    assert relative_error(grad_x, numeric_x) < 1e-6


def test_backward_accumulates_and_zero_grad_resets(rng):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=0, dtype=np.float64))
    x = rng.standard_normal((2, 1, 2, 2))
    _, grads = model.flat_parameters()
    model.zero_grad()
    model.forward(x)
    model.backward(np.ones((2, 3)))
    once = grads.copy()
    model.forward(x)
    model.backward(np.ones((2, 3)))
    np.testing.assert_allclose(grads, 2 * once)
    model.zero_grad()
    assert not grads.any()


def test_flat_parameters_are_views_of_the_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.Flatten(), nn.Linear(2, 3, rng=1))
    params, grads = model.flat_parameters()
    assert params.size == model.n_parameters() == 2 * 9 + 2 + 2 * 3 + 3
    params[:] = 0.5
    assert np.all(model[0].weight == 0.5) and np.all(model[2].bias == 0.5)
    again = model.flat_parameters()
    assert again[0] is params and again[1] is grads


@pytest.mark.parametrize("name", nn.MODELS)
@pytest.mark.parametrize("loss", ["nll", "mse", "margin"])
def test_models_build_and_run(name, loss, rng):
    model = nn.build_model(name, loss=loss, dtype=np.float32, seed=3)
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (2, 10) and y.dtype == np.float32
    crit = nn.make_loss(loss)
    value = crit.forward(y, np.array([1, 7]))
    assert np.isfinite(value)
    model.zero_grad()
    assert model.backward(crit.backward()).shape == x.shape


def test_model_variants_and_seed():
    plain = nn.build_model("convnet", seed=5)
    same = nn.build_model("convnet", seed=5)
    other = nn.build_model("convnet", seed=6)
    np.testing.assert_array_equal(plain.flat_parameters()[0], same.flat_parameters()[0])
    assert not np.array_equal(plain.flat_parameters()[0], other.flat_parameters()[0])
    variant = nn.build_model("convnet", extra_conv=True, dropout=0.5, rotate=0.2)
    kinds = [type(m).__name__ for m in variant.layers]
    assert kinds[0] == "RandomRotation" and kinds.count("Conv2d") == 3
    assert kinds.count("Dropout") == 2
    with pytest.raises(ValueError, match="unknown model"):
        nn.build_model("resnet")
    with pytest.raises(ValueError, match="unknown loss"):
        nn.build_model("convnet", loss="l1")


def test_torch7_initialization_bounds():
    conv = nn.Conv2d(3, 8, 5, rng=0)
    bound = 1 / np.sqrt(3 * 25)
    assert np.abs(conv.weight).max() <= bound and np.abs(conv.weight).max() > 0.9 * bound
    lin = nn.Linear(100, 10, rng=0)
    assert np.abs(lin.weight).max() <= 0.1


def test_stochastic_layers_are_identity_in_eval(rng):
    x = rng.standard_normal((4, 1, 8, 8))
    for layer in (nn.Dropout(0.5), nn.RandomRotation(0.2)):
        layer.eval()
        assert layer.forward(x) is x
        layer.train()
        assert not np.array_equal(layer.forward(x), x)


def test_sequential_prints_like_torch():
    text = repr(nn.Sequential(nn.Tanh(), nn.ReLU()))
    assert text.startswith("Sequential [input -> (1) -> (2) -> output]")
    assert "(1): Tanh()" in text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_gives_bitwise_identical_predictions(tmp_path, rng, dtype):
    model = nn.build_model("convnet", dtype=dtype, rotate=0.2, dropout=0.5, seed=2).eval()
    x = rng.standard_normal((5, 1, 32, 32)).astype(dtype)
    path = tmp_path / "m.npz"
    save_model(path, model, {"normalization": {"mean": 33.3, "std": 78.5}})
    loaded, meta = load_model(path)
    assert meta["normalization"]["mean"] == 33.3
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_load_model_rejects_files_that_are_not_models(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="__config__"):
        load_model(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a model file"):
        load_model(junk)


def test_astype_converts_parameters_and_buffers(rng):
    model = nn.build_model("convnet", seed=1).astype(np.float32)
    assert all(p.dtype == np.float32 for p in model.params())
    y = model.forward(rng.standard_normal((1, 1, 32, 32)).astype(np.float32))
    assert y.dtype == np.float32


def test_model_files_get_ordinary_permissions(tmp_path):
    import os
    import stat
    path = tmp_path / "perm.npz"
    save_model(path, nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=0)))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def _step_outputs(model, x, target):
    crit = nn.NLLLoss()
    _, grads = model.flat_parameters()
    model.zero_grad()
    out = model.forward(x)
    loss = crit.forward(out, target)
    grad_x = model.backward(crit.backward())
    return out.copy(), loss, grads.copy(), grad_x.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_matches_the_validated_path_bitwise(rng, dtype):
    from fastconv.nn import _fastpath
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=0, dtype=dtype), nn.Tanh(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, padding=1, rng=1, dtype=dtype), nn.ReLU(),
                          nn.LPPool2d(2, 2),
                          nn.SubtractiveNormalization(kernel=np.array([0.25, 0.5, 0.25])),
                          nn.Flatten(), nn.Linear(16, 6, rng=2, dtype=dtype),
                          nn.Sigmoid(), nn.Linear(6, 3, bias=False, rng=3, dtype=dtype),
                          nn.LogSoftmax())
    x = rng.standard_normal((2, 1, 10, 10)).astype(dtype)
    target = np.array([0, 2])
    try:
        _fastpath.set_enabled(False)
        slow = _step_outputs(model, x, target)
        _fastpath.set_enabled(True)
        _step_outputs(model, x, target)            # validated call that records the plans
        # (an activation fused with the pooling after it runs in place, without a plan)
        assert all(m._plan_forward is not None for m in model.layers
                   if hasattr(m, "_plan_forward") and not getattr(m, "inplace_last", False))
        fast = _step_outputs(model, x, target)     # the fast path proper
    finally:
        _fastpath.set_enabled(True)
    for a, b in zip(slow, fast):
        np.testing.assert_array_equal(a, b)


def test_fast_path_falls_back_to_validation(rng):
    conv = nn.Conv2d(2, 3, 3, rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 2, 6, 6))
    y = conv.forward(x)
    # A new batch size, a non-contiguous view and another dtype are all re-validated.
    assert conv.forward(x[:1]).shape == (1, 3, 4, 4)
    np.testing.assert_allclose(conv.forward(x[:, :, ::-1][:, :, ::-1]), y)
    with pytest.raises(TypeError, match="dtype"):
        conv.forward(x.astype(np.float32))
    conv.forward(x)
    conv.weight = np.zeros((3, 1, 3, 3))           # a replaced parameter of another shape
    with pytest.raises(ValueError, match="input channels"):
        conv.forward(x)


def test_normalization_fast_path_sees_a_kernel_changed_in_place(rng):
    layer = nn.SubtractiveNormalization(kernel=np.array([0.25, 0.5, 0.25]))
    x = rng.standard_normal((2, 3, 7, 7))
    layer.forward(x)
    layer.kernel[:] = [0.0, 1.0, 0.0]             # now a pure cross-channel mean
    expected = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(layer.forward(x), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_loss_fast_path_matches_validation_and_still_checks_labels(rng, dtype):
    from fastconv import functional as F
    crit = nn.NLLLoss()
    logp = F.log_softmax_forward(rng.standard_normal((6, 5)).astype(dtype))
    target = np.array([0, 4, 2, 2, 1, 3])
    first = crit.forward(logp, target), crit.backward()
    assert crit._plan_forward is not None and crit._plan_backward is not None
    second = crit.forward(logp, target), crit.backward(0.5)
    assert first[0] == second[0]
    np.testing.assert_array_equal(0.5 * first[1], second[1])
    # Labels are range-checked on the fast path too, before any row is indexed.
    for bad in (np.array([0, 5, 2, 2, 1, 3]), np.array([0, -1, 2, 2, 1, 3])):
        with pytest.raises(ValueError, match="labels must lie in"):
            crit.forward(logp, bad)
    # Other label dtypes go through validation and give the same loss.
    assert crit.forward(logp, target.astype(np.int32)) == first[0]
    assert crit._plan_forward is None


@pytest.mark.parametrize("n, n_threads", [(1, 2), (3, 2), (1, 3), (2, 3), (4, 2)])
def test_conv_keeps_the_batch1_im2col_for_backward(rng, n, n_threads):
    """At batch 1 in training mode the sample's whole im2col matrix is kept by the forward
    pass (K = 72 > P = 9 here, the homework's 64->64 case in small) and read back by the
    weight gradient: gradients bitwise those of the validated path, which keeps nothing."""
    import fastconv
    from fastconv.nn import _fastpath
    conv = nn.Conv2d(8, 4, 3, padding=0, rng=0, dtype=np.float32)
    x = rng.standard_normal((n, 8, 5, 5)).astype(np.float32)
    grad_y = rng.standard_normal((n, 4, 3, 3)).astype(np.float32)

    def step():
        conv.zero_grad()
        y = conv.forward(x)
        gx = conv.backward(grad_y)
        return y.copy(), gx.copy(), conv.grad_weight.copy(), conv.grad_bias.copy()

    old = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(n_threads)
        _fastpath.set_enabled(False)
        slow = step()
        _fastpath.set_enabled(True)
        step()                                     # validated: records the plan
        fast = step()
        assert conv._col_ready == (n == 1)
        x[...] = rng.standard_normal(x.shape)       # a new input in the same array
        fresh = step()
        _fastpath.set_enabled(False)
        fresh_slow = step()
    finally:
        _fastpath.set_enabled(True)
        fastconv.set_num_threads(old)
    for a, b in zip(slow + fresh_slow, fast + fresh):
        np.testing.assert_array_equal(a, b)
