"""The layer harness: every registered module through the same checks (Torch7's Jacobian).

For each module in ``tests/layer_cases.py`` (one per registered type): a float64
finite-difference check of the input and parameter gradients, a save/load round trip of
its parameters and buffers, and equality, bit for bit, of the fast path and the validated
path. The fuzz (``tests/fuzz_layers.py``) runs in a subprocess, so that a crash fails the
test instead of killing pytest.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn import _fastpath
from fastconv.nn.module import _REGISTRY
from fastconv.serialization import load_model, save_model

from .gradcheck import numerical_gradient, relative_error
from .layer_cases import CASES, input_for, make

NAMES = sorted(CASES)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_registered_module_has_a_case():
    assert sorted(_REGISTRY) == NAMES


def _reseed(m):
    m.set_rng(np.random.default_rng(7))     # the same dropout mask / angles every forward


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name, rng):
    m = make(name)
    x = input_for(name, rng)
    _reseed(m)
    r = rng.standard_normal(m.forward(x).shape)

    def loss(z):
        _reseed(m)
        return float(np.sum(m.forward(z) * r))

    _reseed(m)
    m.forward(x)
    m.zero_grad()
    gx = m.backward(r)
    assert relative_error(gx, numerical_gradient(loss, x)) < 1e-6
    if m.params():
        params, grads = m.flat_parameters()
        m.zero_grad()
        _reseed(m)
        m.forward(x)
        m.backward(r)
        analytic = grads.copy()
        p0 = params.copy()

        def loss_p(p):
            params[...] = p
            return loss(x)

        numeric = numerical_gradient(loss_p, p0)
        params[...] = p0
        assert relative_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(name, dtype, rng, tmp_path):
    m = make(name, dtype)
    x = input_for(name, rng, dtype)
    for _ in range(2):          # training steps move BatchNorm's running statistics
        m.forward(x)
    path = tmp_path / "m.npz"
    save_model(path, m)
    loaded, _ = load_model(path)
    for a, b in zip(m.params() + m.buffers(), loaded.params() + loaded.buffers()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert len(loaded.buffers()) == len(m.buffers())
    m.eval()
    np.testing.assert_array_equal(m.forward(x), loaded.forward(x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_array_shapes_match_a_built_module(name, bias):
    """``array_shapes`` (what load_model checks a file against before building) says
    exactly what building the module's config allocates."""
    from fastconv.serialization import _implied_arrays
    m = make(name)
    config = m.config()
    for node in config.get("layers", [config]):
        if "bias" in node:
            node["bias"] = bias
    m = nn.module_from_config(config) if not bias else m
    params, buffers, _ = _implied_arrays("m.npz", config)
    assert [s for _, s in params] == [p.shape for p in m.params()]
    assert [s for _, s in buffers] == [b.shape for b in m.buffers()]


def test_checkpoint_resume_restores_buffers_bitwise(tmp_path):
    """BatchNorm's running statistics are saved in checkpoints: an interrupted and resumed
    run ends with the same parameters and statistics as an uninterrupted one."""
    from fastconv.train import homework_trainer
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 60)

    def model():
        r = np.random.default_rng(5)
        return nn.Sequential(nn.Conv2d(1, 4, 3, dtype=np.float32, rng=r),
                             nn.BatchNorm2d(4, dtype=np.float32), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(36, 10, dtype=np.float32, rng=r),
                             nn.LogSoftmax())

    def trainer(folder, m):
        return homework_trainer(m, loss="nll", optimizer="sgd", lr=0.05, batch_size=6, seed=2,
                       save_dir=str(tmp_path / folder), progress=False, verbose=False)

    full = trainer("a", model())
    full.fit(x, y, epochs=3)
    trainer("b", model()).fit(x, y, epochs=2)
    resumed = trainer("b", model())
    resumed.fit(x, y, epochs=3)
    np.testing.assert_array_equal(resumed.params, full.params)
    for a, b in zip(resumed.model.buffers(), full.model.buffers()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.all(b == 0) for b in full.model.buffers())


def _step(m, x, g):
    m.zero_grad()
    _reseed(m)
    y = m.forward(x).copy()
    gx = m.backward(g).copy()
    return [y, gx] + [a.copy() for a in m.grads() + m.buffers()]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_fast_path_equals_validated_path(name, dtype, training, rng):
    x = input_for(name, rng, dtype)
    g = rng.standard_normal(make(name, dtype).forward(x).shape).astype(dtype)
    slow, fast = make(name, dtype).train(training), make(name, dtype).train(training)
    try:
        _fastpath.set_enabled(False)
        expected = [_step(slow, x, g) for _ in range(3)]
    finally:
        _fastpath.set_enabled(True)
    got = [_step(fast, x, g) for _ in range(3)]   # validates, then runs fast
    for e, f in zip(expected, got):
        for a, b in zip(e, f):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_fuzz_in_a_subprocess():
    """Hypothesis changes hyperparameters, arrays, aliasing, shapes, dtypes and threads
    between calls; every call must raise the validated path's error or return its result.
    FASTCONV_FUZZ_EXAMPLES sets the examples per layer (default: the CI profile)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_layers"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (f"fuzz exited with {proc.returncode} (negative: killed by "
                                  f"signal)\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
