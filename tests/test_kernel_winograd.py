"""Winograd F(2x2, 3x3) for stride-1 3x3 convolutions: against an independent float64
reference, its rounding error stated and bounded, the same bits on any thread count, the rule
that chooses it, and gradients through it (the input gradient's forward form) against finite
differences."""
import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv import nn, optim
from fastconv._kernels import _conv2d, _winograd
from fastconv.functional import _conv
from fastconv.train import Trainer

from .gradcheck import check_adjoint, check_vjp
from .reference_conv import conv2d_backward_reference, conv2d_reference

# float32's unit roundoff.
EPS32 = 2.0 ** -24


@pytest.fixture
def force():
    old = F.set_conv_algorithm("auto")
    yield F.set_conv_algorithm
    F.set_conv_algorithm(old)


def _abs_reference(x, weight, pad):
    """sum |w| |x| over each output's terms: the scale of its rounding error."""
    return conv2d_reference(np.abs(x), np.abs(weight), None, 1, pad)


def _run(x, weight, bias, pad, threads=2, tile=2):
    n, c, h, w = x.shape
    y = np.empty((n, weight.shape[0], h + 2 * pad - 2, w + 2 * pad - 2), x.dtype)
    _winograd.winograd_forward(x, weight, bias, y, pad, pad, threads, tile)
    return y


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, f, pad", [
    ((2, 3, 7, 9), 5, 1),        # odd output sizes: clipped last tiles
    ((1, 4, 5, 5), 2, 0),
    ((3, 2, 6, 6), 3, 2),        # wide padding: whole tiles of zeros
    ((1, 1, 3, 3), 1, 0),        # a single output pixel
    ((2, 5, 8, 11), 4, 1),
    ((2, 16, 13, 10), 8, 1),     # rows and columns that are not multiples of 4
    ((2, 32, 32, 32), 32, 1),    # convnet-bn's second layer, several blocks per sample
    ((1, 64, 16, 16), 64, 1),
])
def test_forward_matches_the_reference(shape, f, pad, dtype, tile):
    rng = np.random.default_rng(sum(shape) + f + pad)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((f, shape[1], 3, 3)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    y = _run(x, weight, bias, pad, tile=tile)
    ref = conv2d_reference(x, weight, bias, 1, pad)
    scale = _abs_reference(x, weight, pad) + np.abs(bias)[None, :, None, None]
    # The rounding error, normwise: max |error| relative to max sum |w||x| over the output
    # (docs/guide/performance.rst). F(2x2, 3x3): measured at most 1.6 units of roundoff
    # (im2col: 1.5); F(4x4, 3x3), whose transforms multiply by up to 8 and divide by 24:
    # at most 28. Elementwise it can be larger next to wide zero padding, where an output's
    # own terms are small but its tile's transform adds larger ones.
    err = np.max(np.abs(y - ref)) / np.max(scale)
    unit = EPS32 if dtype == np.float32 else 2.0 ** -53
    assert err <= (4 if tile == 2 else 64) * unit, err / unit
    y_none = _run(x, weight, None, pad, tile=tile)
    np.testing.assert_allclose(y_none + bias[:, None, None], y, rtol=0,
                               atol=(16 if tile == 2 else 128) * unit * np.max(scale))


def test_float32_error_is_comparable_to_im2col():
    """Winograd's float32 error on a trained-net-sized layer is within a few times that of
    im2col + GEMM (both against float64), relative to sum |w||x|."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 32, 32, 32)).astype(np.float32)
    weight = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    ref = conv2d_reference(x, weight, None, 1, 1)
    scale = _abs_reference(x, weight, 1)
    y_w = _run(x, weight, None, 1)
    y_i = np.empty_like(y_w)
    _conv2d.conv2d_forward(x, weight, None, y_i, 1, 1, 1, 1, 2, None)
    err_w = np.max(np.abs(y_w - ref)) / np.max(scale)
    err_i = np.max(np.abs(y_i - ref)) / np.max(scale)
    assert err_w <= 3 * max(err_i, EPS32), (err_w, err_i)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 5, 70])
def test_the_same_bits_on_any_thread_count(n, dtype, tile):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 16, 20, 18)).astype(dtype)
    weight = rng.standard_normal((24, 16, 3, 3)).astype(dtype)
    bias = rng.standard_normal(24).astype(dtype)
    first = _run(x, weight, bias, 1, threads=1, tile=tile)
    for threads in (2, 3, 4, 8):
        assert np.array_equal(first, _run(x, weight, bias, 1, threads=threads, tile=tile)), \
            threads


def _weight_grad(x, grad_y, pad, threads=2, accumulate_into=None):
    f = grad_y.shape[1]
    gw = np.empty((f, x.shape[1], 3, 3), x.dtype) if accumulate_into is None \
        else accumulate_into[0]
    gb = np.empty(f, x.dtype) if accumulate_into is None else accumulate_into[1]
    _winograd.winograd_backward_weight(x, grad_y, gw, gb, accumulate_into is not None, pad,
                                       pad, threads)
    return gw, gb


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, f, pad", [
    ((2, 3, 7, 9), 5, 1), ((1, 4, 5, 5), 2, 0), ((3, 2, 6, 6), 3, 2), ((1, 1, 3, 3), 1, 0),
    ((70, 5, 8, 11), 4, 1),      # more samples than sample groups
    ((2, 32, 32, 32), 32, 1),
])
def test_weight_gradient_matches_the_reference(shape, f, pad, dtype):
    rng = np.random.default_rng(sum(shape) + f)
    x = rng.standard_normal(shape).astype(dtype)
    oh, ow = shape[2] + 2 * pad - 2, shape[3] + 2 * pad - 2
    grad_y = rng.standard_normal((shape[0], f, oh, ow)).astype(dtype)
    weight = np.zeros((f, shape[1], 3, 3), dtype)
    _, ref_w, ref_b = conv2d_backward_reference(x, weight, grad_y, 1, pad)
    gw, gb = _weight_grad(x, grad_y, pad)
    # Normwise against sum |grad_y| |x| (measured at most 2 units of roundoff, im2col 1).
    _, scale, _ = conv2d_backward_reference(np.abs(x), weight, np.abs(grad_y), 1, pad)
    unit = EPS32 if dtype == np.float32 else 2.0 ** -53
    assert np.max(np.abs(gw - ref_w)) / np.max(scale) <= 16 * unit
    np.testing.assert_allclose(gb, ref_b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-11)
    # accumulate adds to what is there
    base_w = rng.standard_normal(gw.shape).astype(dtype)
    base_b = rng.standard_normal(f).astype(dtype)
    acc_w, acc_b = _weight_grad(x, grad_y, pad, accumulate_into=(base_w.copy(), base_b.copy()))
    np.testing.assert_allclose(acc_w, base_w + gw, rtol=1e-5, atol=1e-5 * np.max(np.abs(gw)))
    np.testing.assert_allclose(acc_b, base_b + gb, rtol=1e-5, atol=1e-5 * np.max(np.abs(gb)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 5, 70])
def test_weight_gradient_is_the_same_bits_on_any_thread_count(n, dtype):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 16, 12, 10)).astype(dtype)
    grad_y = rng.standard_normal((n, 24, 12, 10)).astype(dtype)
    first = _weight_grad(x, grad_y, 1, threads=1)
    for threads in (2, 3, 4, 8):
        other = _weight_grad(x, grad_y, 1, threads=threads)
        assert all(np.array_equal(a, b) for a, b in zip(first, other)), threads


def test_an_empty_batch_gives_zero_or_leaves_the_sums():
    x = np.zeros((0, 2, 5, 5))
    grad_y = np.zeros((0, 3, 5, 5))
    gw, gb = np.full((3, 2, 3, 3), 7.0), np.full(3, 7.0)
    _winograd.winograd_backward_weight(x, grad_y, gw, gb, True, 1, 1, 2)
    assert (gw == 7).all() and (gb == 7).all()
    _winograd.winograd_backward_weight(x, grad_y, gw, gb, False, 1, 1, 2)
    assert (gw == 0).all() and (gb == 0).all()


def test_block_size_does_not_change_the_result_beyond_rounding():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 19, 21))
    weight = rng.standard_normal((6, 8, 3, 3))
    old = _winograd._set_block_tiles(1)
    try:
        a = _run(x, weight, None, 1)
    finally:
        _winograd._set_block_tiles(old)
    np.testing.assert_allclose(a, conv2d_reference(x, weight, None, 1, 1), rtol=1e-12,
                               atol=1e-12)
    g = np.random.default_rng(4).standard_normal(a.shape)
    old = _winograd._set_block_tiles(1)
    try:
        gw, gb = _weight_grad(x, g, 1)
    finally:
        _winograd._set_block_tiles(old)
    _, ref_w, ref_b = conv2d_backward_reference(x, weight, g, 1, 1)
    np.testing.assert_allclose(gw, ref_w, rtol=1e-12, atol=1e-11)
    with pytest.raises(ValueError, match="n must be >= 1"):
        _winograd._set_block_tiles(0)


@pytest.mark.parametrize("bad, match", [
    (dict(weight=(4, 3, 5, 5)), r"weight must be \(F, 3, 3, 3\)"),
    (dict(weight=(4, 2, 3, 3)), r"weight must be \(F, 3, 3, 3\)"),
    (dict(y=(2, 4, 6, 6)), r"y must be \(2, 4, 7, 7\)"),
    (dict(bias=(5,)), r"bias must be \(4,\)"),
])
def test_the_kernels_refuse_mismatched_shapes(bad, match):
    shapes = dict(x=(2, 3, 7, 7), weight=(4, 3, 3, 3), y=(2, 4, 7, 7), bias=(4,))
    shapes.update(bad)
    arrays = {k: np.zeros(v, np.float32) for k, v in shapes.items()}
    with pytest.raises(ValueError, match=match):
        _winograd.winograd_forward(arrays["x"], arrays["weight"], arrays["bias"],
                                   arrays["y"], 1, 1, 2)
    if "bias" not in bad:
        with pytest.raises(ValueError, match=match.replace("y must", "grad_y must")):
            _winograd.winograd_backward_weight(arrays["x"], arrays["y"], arrays["weight"],
                                               arrays["bias"], False, 1, 1, 2)
    with pytest.raises(ValueError, match="tile must be 2 or 4"):
        _winograd.winograd_forward(arrays["x"], arrays["weight"], None, arrays["y"], 1, 1, 2,
                                   3)
    with pytest.raises(ValueError, match="padding"):
        _winograd.winograd_forward(np.zeros((1, 1, 1, 1), np.float32),
                                   np.zeros((1, 1, 3, 3), np.float32), None,
                                   np.zeros((1, 1, 1, 1), np.float32), 0, 0, 1)


@pytest.mark.parametrize("weight_shape, stride, y_shape, forward, weight_grad", [
    ((32, 32, 3, 3), 1, (1, 32, 32, 32), "im2col", "im2col"),     # 1,024 pixels in the batch
    ((32, 32, 3, 3), 1, (2, 32, 32, 32), "winograd4", "im2col"),  # 2,048; 16 4x4 tiles a unit
    ((32, 32, 3, 3), 1, (32, 32, 32, 32), "winograd4", "winograd"),
    ((64, 64, 3, 3), 1, (32, 64, 8, 8), "winograd", "im2col"),    # 8x8 plane: 2 tiles a unit
    ((64, 64, 3, 3), 1, (32, 64, 16, 16), "winograd", "winograd"),    # 8 tiles a unit
    ((64, 64, 3, 3), 1, (64, 64, 16, 16), "winograd4", "winograd"),   # 16
    ((64, 64, 3, 3), 1, (31, 64, 16, 16), "winograd", "im2col"),
    ((32, 16, 3, 3), 1, (128, 32, 32, 32), "im2col", "im2col"),   # 16 input channels
    ((32, 3, 3, 3), 1, (128, 32, 32, 32), "im2col", "im2col"),    # a first layer
    ((32, 32, 3, 3), 2, (128, 32, 16, 16), "im2col", "im2col"),   # strided
    ((32, 32, 5, 5), 1, (128, 32, 28, 28), "im2col", "im2col"),   # not 3x3
])
def test_the_rule_is_the_shapes(weight_shape, stride, y_shape, forward, weight_grad, force):
    args = (weight_shape, (stride,) * 2, (1, 1), y_shape)
    assert F.conv_algorithm(*args) == forward
    assert F.weight_grad_algorithm(*args) == weight_grad
    applies = stride == 1 and weight_shape[2:] == (3, 3)
    for name in ("winograd", "winograd4"):       # forced only where it applies
        force(name)
        assert F.conv_algorithm(*args) == (name if applies else "im2col")
        assert F.weight_grad_algorithm(*args) == ("winograd" if applies else "im2col")
    force("im2col")
    assert F.conv_algorithm(*args) == F.weight_grad_algorithm(*args) == "im2col"
    with pytest.raises(ValueError, match="must be one of"):
        force("fft")


def test_the_input_gradient_takes_the_forward_form_where_that_runs_winograd(force):
    # 16x16 "same" layer: below the 576-pixel plane, so only Winograd makes it pay.
    shape = (64, 64, 3, 3)
    assert F.input_grad_algorithm(shape, (1, 1), (1, 1), (8, 64, 16, 16)) == "transposed"
    assert F.input_grad_algorithm(shape, (1, 1), (1, 1), (4, 64, 16, 16)) == "col2im"
    assert F.input_grad_algorithm((16, 64, 3, 3), (1, 1), (1, 1), (8, 16, 16, 16)) == \
        "col2im"                           # its forward form would have 16 input channels
    force("im2col")
    assert F.input_grad_algorithm(shape, (1, 1), (1, 1), (8, 64, 16, 16)) == "col2im"
    # the thread-invariance test's Winograd layer takes it at every batch it runs
    for n in (1, 3, 7):
        force("auto")
        assert F.conv_algorithm((24, 32, 3, 3), (1, 1), (1, 1), (n, 24, 48, 48)) != "im2col"


@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "winograd4"])
def test_the_public_forward_and_gradients_through_either_algorithm(algorithm, force):
    """conv2d_forward takes the forced algorithm; the input gradient of a "same" 3x3
    convolution (a forward convolution of grad_out) passes finite differences and the
    adjoint identity through it."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 10, 9))
    weight = rng.standard_normal((16, 16, 3, 3))
    bias = rng.standard_normal(16)
    force(algorithm)
    np.testing.assert_allclose(F.conv2d_forward(x, weight, bias, 1, 1),
                               conv2d_reference(x, weight, bias, 1, 1), rtol=1e-11,
                               atol=1e-11)
    g = rng.standard_normal((2, 16, 10, 9))
    grad_x, gw, gb = F.conv2d_backward(x, weight, g, 1, 1)
    ref = conv2d_backward_reference(x, weight, g, 1, 1)
    for a, b in zip((grad_x, gw, gb), ref):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)
    gw_only, _ = F.conv2d_backward_weight(x, g, weight.shape, 1, 1)
    np.testing.assert_allclose(gw_only, ref[1], rtol=1e-11, atol=1e-11)
    F.set_input_grad_algorithm("transposed")
    try:
        # Finite differences at 150 random entries (each costs two reference passes), and
        # the adjoint identity over all of them.
        check_vjp(lambda z: conv2d_reference(z, weight, None, 1, 1),
                  lambda z, y, r: F.conv2d_backward_input(r, weight, z.shape, 1, 1), x, rng,
                  probes=150)
        y = conv2d_reference(x, weight, None, 1, 1)
        check_adjoint(lambda u: F.conv2d_forward(u, weight, None, 1, 1),
                      lambda v: F.conv2d_backward_input(v, weight, x.shape, 1, 1),
                      x, rng.standard_normal(y.shape))
    finally:
        F.set_input_grad_algorithm("auto")


@pytest.mark.parametrize("algorithm", ["winograd", "winograd4"])
def test_a_conv2d_layer_checks_its_gradients_through_winograd(algorithm, force):
    force(algorithm)
    rng = np.random.default_rng(5)
    conv = nn.Conv2d(4, 6, 3, padding=1, dtype=np.float64, rng=1)
    x = rng.standard_normal((2, 4, 6, 7))
    y = conv.forward(x)
    np.testing.assert_allclose(y, conv2d_reference(x, conv.weight, conv.bias, 1, 1),
                               rtol=1e-11, atol=1e-11)
    check_vjp(lambda z: conv2d_reference(z, conv.weight, conv.bias, 1, 1),
              lambda z, y, r: (conv.forward(z), conv.backward(r))[1], x, rng)


def test_a_batch_normalized_net_takes_winograd_and_trains_to_the_same_bits():
    """convnet-bn's 3x3 layers from 32 channels on take Winograd at batch 32 (forward and
    weight gradient); training is the same bits on 1, 2, 3, 4 and 8 threads."""
    data = fastconv.datasets.load_mnist_sample(size=(40, 1))
    weights = []
    for threads in (1, 2, 3, 4, 8):
        model = nn.build_model("convnet-bn", rotate=0.1, dropout=0.2, seed=3)
        Trainer(model, optimizer=optim.spec("sgd", lr=0.05, momentum=0.9), batch_size=32,
                seed=2, threads=threads, progress=False, verbose=False).fit(
            data.train_x, data.train_y, epochs=1)
        weights.append(model.flat_parameters()[0].copy())
    assert all(np.array_equal(weights[0], w) for w in weights[1:])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    planes = [(32, 32), (32, 32), (16, 16), (16, 16)]     # the four convolutions' outputs
    chosen = [(_conv.conv_algorithm(c.weight.shape, c.stride, c.padding, (32, 1) + p),
               _conv.weight_grad_algorithm(c.weight.shape, c.stride, c.padding, (32, 1) + p))
              for c, p in zip(convs, planes)]
    assert chosen == [("im2col", "im2col"), ("winograd4", "winograd"),
                      ("winograd", "winograd"), ("winograd", "winograd")], chosen
