"""The two ways of computing a convolution's input gradient: the scatter (col2im) and, for
stride-1 "same" convolutions, the forward convolution of grad_out with the flipped, transposed
filters. Both are checked against finite differences and each other; the choice is a rule of
the shapes, so that every thread count gives the same bits."""
import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv import nn, optim
from fastconv.functional import _conv
from fastconv.train import Trainer

from .gradcheck import check_adjoint, check_vjp
from .reference_conv import conv2d_reference


@pytest.fixture
def force():
    old = F.set_input_grad_algorithm("auto")
    yield F.set_input_grad_algorithm
    F.set_input_grad_algorithm(old)


@pytest.mark.parametrize("shape, k, pad, stride, expected", [
    ((2, 3, 32, 32), 3, 1, 1, "transposed"),      # 1024-pixel plane, same padding
    ((2, 3, 24, 24), 5, 2, 1, "transposed"),      # 576, the smallest plane that takes it
    ((2, 3, 20, 20), 3, 1, 1, "col2im"),          # 400: the scatter is as fast there
    ((2, 3, 32, 32), 3, 0, 1, "col2im"),          # not same padding
    ((2, 3, 32, 32), 3, 1, 2, "col2im"),          # strided
    ((2, 3, 32, 32), 4, 1, 1, "col2im"),          # even kernel
])
def test_the_rule_is_the_shapes(shape, k, pad, stride, expected, force):
    oh = (shape[2] + 2 * pad - k) // stride + 1
    y_shape = (shape[0], 4, oh, oh)
    assert F.input_grad_algorithm((4, shape[1], k, k), (stride,) * 2, (pad,) * 2,
                                  y_shape) == expected
    force("transposed")       # forced only where the form applies
    assert F.input_grad_algorithm((4, shape[1], k, k), (stride,) * 2, (pad,) * 2,
                                  y_shape) == ("transposed" if expected == "transposed"
                                               or (pad, stride, k % 2) == ((k - 1) // 2, 1, 1)
                                               else "col2im")
    with pytest.raises(ValueError, match="must be one of"):
        force("winograd")


def _case(rng, n=2, c=3, f=4, h=7, w=9, k=3, dtype=np.float64):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, k, k)).astype(dtype)
    return x, weight, ((k - 1) // 2,) * 2


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("algorithm", ["col2im", "transposed"])
def test_both_forms_pass_finite_differences_and_agree(k, algorithm, force):
    rng = np.random.default_rng(k)
    x, weight, pad = _case(rng, k=k)
    force(algorithm)
    assert F.input_grad_algorithm(weight.shape, (1, 1), pad, (2, 4, 7, 9)) == algorithm
    check_vjp(lambda z: conv2d_reference(z, weight, None, 1, pad),
              lambda z, y, r: F.conv2d_backward_input(r, weight, z.shape, 1, pad), x, rng)
    y = conv2d_reference(x, weight, None, 1, pad)
    check_adjoint(lambda u: conv2d_reference(u, weight, None, 1, pad),
                  lambda v: F.conv2d_backward_input(v, weight, x.shape, 1, pad),
                  x, rng.standard_normal(y.shape))
    g = rng.standard_normal(y.shape)
    force("col2im")
    a = F.conv2d_backward_input(g, weight, x.shape, 1, pad)
    force("transposed")
    b = F.conv2d_backward_input(g, weight, x.shape, 1, pad)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # The combined call computes the same weight gradients either way.
    force("col2im")
    ga = F.conv2d_backward(x, weight, g, 1, pad)
    force("transposed")
    gb = F.conv2d_backward(x, weight, g, 1, pad)
    for u, v in zip(ga, gb):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_transposed_form_is_the_same_bits_on_any_thread_count(dtype, force):
    rng = np.random.default_rng(0)
    x, weight, pad = _case(rng, n=5, c=8, f=16, h=32, w=32, dtype=dtype)
    g = rng.standard_normal((5, 16, 32, 32)).astype(dtype)
    assert F.input_grad_algorithm(weight.shape, (1, 1), pad, g.shape) == "transposed"
    results = [F.conv2d_backward(x, weight, g, 1, pad, n_threads=t) for t in (1, 2, 3, 4)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_a_batch_normalized_net_trains_to_the_same_bits_on_any_thread_count():
    """convnet-bn's second convolution (32 channels on 32x32) takes the transposed form."""
    data = fastconv.datasets.load_mnist_sample(size=(40, 1))
    weights = []
    for threads in (1, 2, 3, 4):
        model = nn.build_model("convnet-bn", rotate=0.1, translate=0.1, dropout=0.2, seed=3)
        Trainer(model, optimizer=optim.spec("adam", lr=1e-3), batch_size=20, seed=2,
                threads=threads, progress=False, verbose=False).fit(
            data.train_x, data.train_y, epochs=1)
        weights.append(model.flat_parameters()[0].copy())
    assert all(np.array_equal(weights[0], w) for w in weights[1:])
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]
    assert _conv.input_grad_algorithm(conv.weight.shape, conv.stride, conv.padding,
                                      (20, 32, 32, 32)) == "transposed"
