"""Every reproduction of issue 10 (found by using the public API as a user would), each now
a clear exception or a correct result, never a crash or garbage."""
import gzip
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv import nn
from fastconv.datasets._idx import DataFileError, read_idx
from fastconv.nn import _fastpath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.random.default_rng(0).standard_normal((2, 1, 16, 16))


def _validated(layer, x):
    try:
        _fastpath.set_enabled(False)
        return layer.forward(x)
    finally:
        _fastpath.set_enabled(True)


@pytest.mark.parametrize("make, attr, value", [
    (lambda: nn.Conv2d(1, 4, 3, dtype=np.float64), "padding", (1, 1)),
    (lambda: nn.Conv2d(1, 4, 3, stride=2, dtype=np.float64), "stride", (1, 1)),
    (lambda: nn.LPPool2d(2, 2, 2), "stride", (16, 16)),
    (lambda: nn.MaxPool2d(2, 2), "stride", (8, 8)),
    (lambda: nn.MaxPool2d(2, 2), "kernel_size", (9, 9)),
])
def test_hyperparameter_changed_after_a_call(make, attr, value):
    layer = make()
    layer.forward(X)
    layer.forward(X)                     # fast path
    setattr(layer, attr, value)
    y = layer.forward(X)
    fresh = make()
    fresh.weight = getattr(layer, "weight", None)
    fresh.bias = getattr(layer, "bias", None)
    setattr(fresh, attr, value)
    np.testing.assert_array_equal(y, _validated(fresh, X))


def _nll_after_two_calls():
    loss = nn.NLLLoss()
    lp = np.log(np.full((64, 10), .1))
    t = np.zeros(64, np.intp)
    loss.forward(lp, t)
    loss.backward()
    loss.forward(lp, t)
    return loss, lp, t


@pytest.mark.parametrize("bad", [10**12, 10, -1])
def test_labels_changed_between_forward_and_backward(bad):
    loss, lp, t = _nll_after_two_calls()
    t[0] = bad
    with pytest.raises(ValueError, match="labels must lie in"):
        loss.backward()


def test_log_probabilities_reshaped_between_forward_and_backward():
    loss, lp, t = _nll_after_two_calls()
    lp.shape = (40, 16)
    with pytest.raises(ValueError, match="target must have shape"):
        loss.backward()


def _two_steps(layer, x):
    for _ in range(2):
        y = layer.forward(x)
        layer.backward(np.ones_like(y))
    return y


def test_gradient_aliasing_a_weight_is_refused():
    conv = nn.Conv2d(1, 4, 3, rng=0, dtype=np.float64)
    y = _two_steps(conv, X)
    conv.grad_weight = conv.weight
    before = conv.weight.copy()
    conv.forward(X)
    with pytest.raises(ValueError, match="grad_weight must not share memory"):
        conv.backward(np.ones_like(y))
    np.testing.assert_array_equal(conv.weight, before)


def test_gradient_aliasing_the_input_is_refused():
    lin = nn.Linear(4, 4, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((4, 4))
    y = _two_steps(lin, x)
    lin.grad_weight = x
    before = x.copy()
    lin.forward(x)
    with pytest.raises(ValueError, match="must not share memory"):
        lin.backward(np.ones_like(y))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("n, n_threads", [(3, 2), (1, 2), (1, 1)])
def test_input_changed_in_place_between_forward_and_backward(n, n_threads):
    """Conv2d kept the im2col of forward's last sample; backward must not mix it with the
    new input."""
    old = fastconv.get_num_threads()
    rng = np.random.default_rng(2)
    try:
        fastconv.set_num_threads(n_threads)
        fast = nn.Conv2d(8, 4, 3, rng=0, dtype=np.float64)
        slow = nn.Conv2d(8, 4, 3, rng=0, dtype=np.float64)
        x = rng.standard_normal((n, 8, 5, 5))
        g = rng.standard_normal((n, 4, 3, 3))
        _two_steps(fast, x)
        fast.zero_grad()
        fast.forward(x)
        x[...] = rng.standard_normal(x.shape)
        gx = fast.backward(g)
        _fastpath.set_enabled(False)
        slow.forward(x)
        gx_ref = slow.backward(g)
    finally:
        _fastpath.set_enabled(True)
        fastconv.set_num_threads(old)
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_array_equal(fast.grad_weight, slow.grad_weight)


def test_thread_count_is_capped():
    with pytest.raises(ValueError, match=r"n_threads must be in \[1, "):
        fastconv.set_num_threads(100000)
    with pytest.raises(ValueError, match=r"must be in \[1, "):
        F.tanh_forward(np.ones(4), n_threads=100000)


def test_cli_threads_is_capped():
    proc = subprocess.run([sys.executable, "-m", "fastconv.cli", "train", "--threads",
                           "100000", "--epochs", "0"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 2 and "--threads: must be <= " in proc.stderr
    assert "100000" in proc.stderr and "Traceback" not in proc.stderr


ONE = np.ones((1, 1, 1, 1))


@pytest.mark.parametrize("stride, padding, match", [
    (2**30, 2**30, "padded input height"),
    (2**31 - 1, 2**30, "padded input height"),
    (2**40, 0, "stride must be <= 2147483647"),
])
def test_conv_geometry_past_int_is_refused(stride, padding, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d_forward(ONE, ONE, None, stride=stride, padding=padding)
    with pytest.raises(ValueError, match=match):
        F.conv2d_backward(ONE, ONE, ONE, stride=stride, padding=padding)


def test_conv_kernel_refuses_overflowing_geometry_itself():
    from fastconv._kernels import _conv2d
    with pytest.raises(ValueError, match="out of range"):
        _conv2d.conv2d_forward(ONE, ONE, None, np.empty((1, 1, 1, 1)), 2**30, 2**30, 2**30,
                               2**30, 1)


def test_large_stride_gives_the_correct_result():
    y = F.conv2d_forward(np.ones((1, 1, 3, 3)), ONE, None, stride=2**31 - 1, padding=2**29)
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1, 1)))


def _gzip_bomb(path, gib):
    """A gzip of ``gib`` GiB of zeros in a few MB: one compressed MiB repeated as members."""
    member = gzip.compress(bytes(1 << 20), mtime=0)
    with open(path, "wb") as f:
        for _ in range(gib * 1024):
            f.write(member)


def test_gzip_bomb_is_rejected_fast(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    _gzip_bomb(path, 3)
    start = time.perf_counter()
    with pytest.raises(DataFileError, match="bad magic number") as info:
        read_idx(path)
    assert time.perf_counter() - start < 1.0
    assert info.value.path == str(path)


def test_header_declaring_too_much_is_refused_before_inflating(tmp_path):
    path = tmp_path / "big.gz"
    header = bytes([0, 0, 8, 1]) + (2**31).to_bytes(4, "big")
    with open(path, "wb") as f:
        f.write(gzip.compress(header + bytes(1 << 20), mtime=0))
    with pytest.raises(DataFileError, match="more than the 1073741824-byte limit"):
        read_idx(path)


@pytest.mark.parametrize("layer", [nn.SubtractiveNormalization, nn.ContrastiveNormalization,
                                   nn.Conv2d.__mro__[0] and nn.Tanh, nn.MaxPool2d])
def test_backward_before_forward(layer):
    m = layer(2) if layer is nn.MaxPool2d else layer()
    with pytest.raises(RuntimeError, match="call forward first"):
        m.backward(np.ones((1, 1, 8, 8)))
