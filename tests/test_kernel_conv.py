"""Tests of the 2-D convolution kernels (fastconv.functional.conv2d_*)."""
import numpy as np
import pytest

from fastconv.functional import (conv2d_backward, conv2d_backward_input,
                                 conv2d_backward_weight, conv2d_forward)
from tests.gradcheck import check_adjoint, check_vjp
from tests.reference_conv import conv2d_backward_reference, conv2d_reference

# Per-dtype tolerance against the float64 reference, relative to the output's magnitude.
TOL = {np.float32: 2e-5, np.float64: 1e-12}

# (N, C, H, W, F, KH, KW, stride, padding): odd sizes, non-square kernels, strides and
# paddings, a kernel as large as the (padded) input, padding as wide as the kernel (outputs
# that see only zeros), N = 1 and C = 1, and batches that do not divide by the thread count
# (the kernels' batch and split phases), with K = C*KH*KW both below and above
# P = OH*OW (the split phase cuts its GEMMs differently), a single output row, and batches
# that the batch phase runs as several multi-sample GEMMs plus a smaller last one.
CASES = [
    (2, 3, 7, 6, 4, 3, 3, 1, 0),
    (3, 2, 9, 8, 3, 3, 2, 2, 1),
    (1, 1, 5, 5, 2, 5, 5, 1, 0),
    (2, 2, 4, 5, 3, 6, 7, 1, 1),
    (1, 3, 8, 11, 5, 2, 4, (2, 3), (0, 2)),
    (5, 1, 6, 7, 2, 3, 3, 3, 2),
    (4, 2, 3, 3, 2, 1, 1, 1, 1),
    (3, 4, 6, 6, 1, 3, 3, 2, 2),
    (2, 2, 4, 4, 3, 2, 2, 1, 3),
    (1, 1, 3, 40, 2, 3, 3, 1, 0),
    (11, 3, 7, 6, 4, 3, 3, 1, 1),
    (14, 2, 6, 5, 3, 2, 3, (2, 1), (1, 0)),
    (3, 8, 9, 9, 5, 4, 4, 1, 1),
    (1, 9, 6, 7, 4, 4, 4, 1, 0),
]
IDS = ["basic", "stride2-pad1", "kernel=input", "kernel=padded-input", "asymmetric",
       "stride3-pad2-N5", "1x1-pad", "F1-pad2", "pad>kernel", "one-output-row",
       "N11-chunked", "N14-chunked-stride", "K128>P", "K144>P-N1"]
# The central-difference checks of the largest cases take most of this file's time: they
# run in the full suite and are left out of the quick one (-m "not slow").
GRAD_CASES = [pytest.param(case, id=name, marks=pytest.mark.slow if name in
                           ("N11-chunked", "N14-chunked-stride", "K128>P") else ())
              for case, name in zip(CASES, IDS)]


@pytest.fixture(autouse=True, params=["blocks-default", "blocks-per-channel",
                                      "grad-transposed"])
def im2col_blocks(request):
    """Run every test three times: with the default im2col block of the batch phase and the
    default choice of weight-gradient product; with one input channel per block (many
    blocks, partial sums over blocks); and with grad_y transposed for the weight gradient
    whatever K is (by default only layers with K >= 128 take that product)."""
    from fastconv._kernels._conv2d import _set_block_elements, _set_transpose_min_k
    if request.param == "blocks-default":
        yield
    elif request.param == "blocks-per-channel":
        old = _set_block_elements(1)
        yield
        _set_block_elements(old)
    else:
        old = _set_transpose_min_k(0)
        yield
        _set_transpose_min_k(old)


def make(case, dtype=np.float64, seed=0):
    n, c, h, w, f, kh, kw, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    return x, weight, bias, stride, padding


def assert_close(got, ref, dtype):
    ref = np.asarray(ref, dtype=np.float64)
    tol = TOL[dtype] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=0, atol=tol)


# --- Forward ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_forward_matches_reference(case, dtype, n_threads):
    x, weight, bias, stride, padding = make(case, dtype)
    for b in (bias, None):
        y = conv2d_forward(x, weight, b, stride, padding, n_threads=n_threads)
        assert y.dtype == dtype
        assert_close(y, conv2d_reference(x, weight, b, stride, padding), dtype)


@pytest.mark.parametrize("n", [1, 3])
def test_forward_homework_layer_float32(n):
    """The 64->64 5x5 layer of the homework's ConvNet: K = 1600 terms per output."""
    x, weight, bias, _, _ = make((n, 64, 14, 14, 64, 5, 5, 1, 0), np.float32)
    y = conv2d_forward(x, weight, bias)
    assert y.shape == (n, 64, 10, 10)
    assert_close(y, conv2d_reference(x, weight, bias), np.float32)


def test_forward_shape_formula():
    x = np.zeros((2, 3, 28, 17))
    y = conv2d_forward(x, np.zeros((5, 3, 5, 4)), None, stride=(3, 2), padding=(2, 1))
    assert y.shape == (2, 5, (28 + 4 - 5) // 3 + 1, (17 + 2 - 4) // 2 + 1)


def test_forward_accepts_non_contiguous_inputs():
    x, weight, bias, stride, padding = make(CASES[1])
    expected = conv2d_forward(x, weight, bias, stride, padding)
    xf = np.asfortranarray(x)
    wide = np.zeros((weight.shape[0] * 2,) + weight.shape[1:])
    wide[::2] = weight
    got = conv2d_forward(xf, wide[::2], bias, stride, padding)
    np.testing.assert_array_equal(got, expected)


def test_forward_writes_into_out():
    x, weight, bias, stride, padding = make(CASES[0])
    out = np.full(conv2d_reference(x, weight, bias).shape, np.nan)
    y = conv2d_forward(x, weight, bias, stride, padding, out=out)
    assert y is out
    assert_close(out, conv2d_reference(x, weight, bias, stride, padding), np.float64)


def test_nan_propagates_to_the_outputs_that_see_it():
    x = np.ones((1, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    y = conv2d_forward(x, np.ones((1, 1, 3, 3)), None, padding=1)
    rows, cols = np.nonzero(np.isnan(y[0, 0]))
    assert sorted(set(rows)) == [1, 2, 3] and sorted(set(cols)) == [2, 3, 4]
    assert np.isnan(y).sum() == 9


def test_empty_batch():
    weight = np.ones((4, 3, 3, 3))
    y = conv2d_forward(np.ones((0, 3, 5, 5)), weight)
    assert y.shape == (0, 4, 3, 3)
    gx, gw, gb = conv2d_backward(np.ones((0, 3, 5, 5)), weight, y)
    assert gx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)


# --- Backward against central differences of the reference -------------------------------

@pytest.mark.parametrize("case", GRAD_CASES)
def test_grad_input(case, rng):
    x, weight, bias, stride, padding = make(case)
    # The large cases: finite differences at 200 random entries, and the adjoint identity
    # <conv(u), v> = <u, conv_backward_input(v)> over all of them (the input gradient is the
    # transpose of a linear map).
    if x.size > 4000:
        y = conv2d_reference(x, weight, None, stride, padding)
        check_adjoint(lambda u: conv2d_reference(u, weight, None, stride, padding),
                      lambda v: conv2d_backward_input(v, weight, x.shape, stride, padding),
                      x, rng.standard_normal(y.shape), tol=1e-10)
    check_vjp(lambda z: conv2d_reference(z, weight, bias, stride, padding),
              lambda z, y, r: conv2d_backward_input(r, weight, z.shape, stride, padding),
              x, rng, probes=200 if x.size > 4000 else None)


@pytest.mark.parametrize("case", GRAD_CASES)
def test_grad_weight(case, rng):
    x, weight, bias, stride, padding = make(case)
    check_vjp(lambda wv: conv2d_reference(x, wv, bias, stride, padding),
              lambda wv, y, r: conv2d_backward_weight(x, r, wv.shape, stride, padding)[0],
              weight, rng)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grad_bias(case, rng):
    x, weight, bias, stride, padding = make(case)
    check_vjp(lambda bv: conv2d_reference(x, weight, bv, stride, padding),
              lambda bv, y, r: conv2d_backward_weight(x, r, weight.shape, stride, padding)[1],
              bias, rng)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_combined_backward_equals_separate_calls(case, dtype, n_threads, rng):
    x, weight, _, stride, padding = make(case, dtype)
    grad_out = rng.standard_normal(conv2d_reference(x, weight, None, stride, padding).shape)
    grad_out = grad_out.astype(dtype)
    gx, gw, gb = conv2d_backward(x, weight, grad_out, stride, padding, n_threads=n_threads)
    gx1 = conv2d_backward_input(grad_out, weight, x.shape, stride, padding,
                                n_threads=n_threads)
    gw1, gb1 = conv2d_backward_weight(x, grad_out, weight.shape, stride, padding,
                                      n_threads=n_threads)
    np.testing.assert_array_equal(gx, gx1)
    np.testing.assert_array_equal(gw, gw1)
    np.testing.assert_array_equal(gb, gb1)
    assert gx.dtype == gw.dtype == gb.dtype == dtype


# --- Adjoint (dot-product) tests ----------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_input_is_the_adjoint_in_x(case, rng):
    x, weight, _, stride, padding = make(case)
    y_shape = conv2d_reference(x, weight, None, stride, padding).shape
    check_adjoint(lambda u: conv2d_forward(u, weight, None, stride, padding),
                  lambda v: conv2d_backward_input(v, weight, x.shape, stride, padding),
                  rng.standard_normal(x.shape), rng.standard_normal(y_shape))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_weight_is_the_adjoint_in_weight(case, rng):
    x, weight, _, stride, padding = make(case)
    y_shape = conv2d_reference(x, weight, None, stride, padding).shape
    check_adjoint(lambda u: conv2d_forward(x, u, None, stride, padding),
                  lambda v: conv2d_backward_weight(x, v, weight.shape, stride, padding)[0],
                  rng.standard_normal(weight.shape), rng.standard_normal(y_shape))


# --- Precision, threads, determinism ------------------------------------------------------

@pytest.mark.parametrize("case", CASES[:3] + CASES[5:6], ids=IDS[:3] + IDS[5:6])
def test_float32_agrees_with_float64(case, rng):
    x, weight, bias, stride, padding = make(case)
    grad_out = rng.standard_normal(conv2d_reference(x, weight, None, stride, padding).shape)
    as32 = [a.astype(np.float32) for a in (x, weight, bias, grad_out)]
    assert_close(conv2d_forward(*as32[:3], stride, padding),
                 conv2d_forward(x, weight, bias, stride, padding), np.float32)
    for got, ref in zip(conv2d_backward(as32[0], as32[1], as32[3], stride, padding),
                        conv2d_backward(x, weight, grad_out, stride, padding)):
        assert_close(got, ref, np.float32)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("c, h", [(6, 12), (16, 4)], ids=["K<P", "K>P"])
def test_thread_counts_agree_and_each_is_deterministic(n, c, h, rng):
    x, weight, bias, _, _ = make((n, c, h, h - 2, 8, 3, 3, 1, 1), np.float32)
    grad_out = rng.standard_normal((n, 8, h, h - 2)).astype(np.float32)
    results = {}
    for t in (1, 2, 3, 4):
        first = [conv2d_forward(x, weight, bias, padding=1, n_threads=t),
                 *conv2d_backward(x, weight, grad_out, padding=1, n_threads=t)]
        again = [conv2d_forward(x, weight, bias, padding=1, n_threads=t),
                 *conv2d_backward(x, weight, grad_out, padding=1, n_threads=t)]
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
        results[t] = first
    for t in (2, 3, 4):
        for got, ref in zip(results[t], results[1]):
            assert_close(got, ref, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n", [1, 3])
def test_backward_homework_layer(n, n_threads, dtype, rng):
    """All three gradients of the 64->64 5x5 layer (K = 1600: the transposed weight-gradient
    product by default) against the tap-by-tap reference."""
    x, weight, _, _, _ = make((n, 64, 14, 14, 64, 5, 5, 1, 0), dtype)
    grad_out = rng.standard_normal((n, 64, 10, 10)).astype(dtype)
    got = conv2d_backward(x, weight, grad_out, n_threads=n_threads)
    for g, r in zip(got, conv2d_backward_reference(x, weight, grad_out)):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("seed", range(12))
def test_backward_random_geometries(seed):
    """Random sizes, strides and paddings (padding up to the kernel size and beyond, rows
    wider than the 8- and 16-element chunks of the unit-stride col2im), float64."""
    rng = np.random.default_rng(seed)
    kh, kw = rng.integers(1, 6, size=2)
    sh, sw = rng.integers(1, 4, size=2)
    ph, pw = rng.integers(0, 6, size=2)
    h, w = kh + rng.integers(0, 12), kw + rng.integers(0, 30)
    n, c, f = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 5)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((f, c, kh, kw))
    stride, padding = (int(sh), int(sw)), (int(ph), int(pw))
    y_shape = conv2d_reference(x, weight, None, stride, padding).shape
    grad_out = rng.standard_normal(y_shape)
    for n_threads in (1, 2, 3):
        got = conv2d_backward(x, weight, grad_out, stride, padding, n_threads=n_threads)
        for g, r in zip(got, conv2d_backward_reference(x, weight, grad_out, stride, padding)):
            assert_close(g, r, np.float64)


@pytest.mark.parametrize("kw, pw", [(19, 0), (23, 9), (17, 20)])
def test_backward_input_wide_kernels(kw, pw, rng):
    """Kernels wider than two 8-element chunks: the unit-stride col2im's reads for a chunk
    may start more than 16 elements before a row; they must be skipped, not made."""
    x = rng.standard_normal((2, 3, 4, 30))
    weight = rng.standard_normal((2, 3, 2, kw))
    y_shape = conv2d_reference(x, weight, None, 1, (1, pw)).shape
    grad_out = rng.standard_normal(y_shape)
    for n_threads in (1, 2):
        got = conv2d_backward(x, weight, grad_out, 1, (1, pw), n_threads=n_threads)
        for g, r in zip(got, conv2d_backward_reference(x, weight, grad_out, 1, (1, pw))):
            assert_close(g, r, np.float64)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("padding", [0, 2])
def test_nonfinite_grad_out_reaches_only_its_window(value, padding):
    """One non-finite output gradient reaches exactly the inputs its window covers: the
    col2im reads past the rows it adds and must drop what it reads there, NaN or inf."""
    x = np.ones((1, 3, 14, 14), dtype=np.float32)
    weight = np.ones((4, 3, 5, 5), dtype=np.float32)
    oh = 14 + 2 * padding - 4
    grad_out = np.ones((1, 4, oh, oh), dtype=np.float32)
    i, j = 3, oh - 1
    grad_out[0, 1, i, j] = value
    grad_x = conv2d_backward_input(grad_out, weight, x.shape, padding=padding)
    hit = np.zeros((14, 14), dtype=bool)
    hit[max(0, i - padding):max(0, i - padding + 5), max(0, j - padding):j - padding + 5] = True
    for ch in range(3):
        np.testing.assert_array_equal(~np.isfinite(grad_x[0, ch]), hit)


# --- accumulate_into and out= -------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n", [1, 3])
def test_accumulate_into_adds_in_place(n, n_threads, rng):
    x, weight, _, stride, padding = make((n, 2, 7, 6, 3, 3, 3, 2, 1))
    grad_out = rng.standard_normal(conv2d_reference(x, weight, None, stride, padding).shape)
    gw, gb = conv2d_backward_weight(x, grad_out, weight.shape, stride, padding)
    gw0, gb0 = rng.standard_normal(gw.shape), rng.standard_normal(gb.shape)
    acc_w, acc_b = gw0.copy(), gb0.copy()
    rw, rb = conv2d_backward_weight(x, grad_out, weight.shape, stride, padding,
                                    accumulate_into=(acc_w, acc_b), n_threads=n_threads)
    assert rw is acc_w and rb is acc_b
    assert_close(acc_w, gw0 + gw, np.float64)
    assert_close(acc_b, gb0 + gb, np.float64)
    acc_w = gw0.copy()
    gx, rw, rb = conv2d_backward(x, weight, grad_out, stride, padding,
                                 accumulate_into=(acc_w, None), n_threads=n_threads)
    assert rw is acc_w and rb is None
    assert_close(acc_w, gw0 + gw, np.float64)


def test_backward_input_writes_into_out(rng):
    x, weight, _, stride, padding = make(CASES[1])
    grad_out = rng.standard_normal(conv2d_reference(x, weight, None, stride, padding).shape)
    out = np.full(x.shape, np.nan)
    got = conv2d_backward_input(grad_out, weight, x.shape, stride, padding, out=out)
    assert got is out
    np.testing.assert_array_equal(out, conv2d_backward_input(grad_out, weight, x.shape,
                                                             stride, padding))


# --- Validation ---------------------------------------------------------------------------

X = np.zeros((2, 3, 8, 8))
W = np.zeros((4, 3, 3, 3))
B = np.zeros(4)
GY = np.zeros((2, 4, 6, 6))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: conv2d_forward([[1.0]], W), TypeError, "conv2d_forward: x must be a numpy"),
    (lambda: conv2d_forward(X[0], W), ValueError, r"x must be 4-D \(N, C, H, W\)"),
    (lambda: conv2d_forward(X.astype(int), W), TypeError, "x must have dtype float32 or"),
    (lambda: conv2d_forward(X, W.astype(np.float32)), TypeError, "weight must have the same"),
    (lambda: conv2d_forward(X, W, B.astype(np.float32)), TypeError, "bias must have the same"),
    (lambda: conv2d_forward(X, W[:, :2]), ValueError, "weight has 2 input channels but x has 3"),
    (lambda: conv2d_forward(X, np.zeros((4, 3, 9, 3))), ValueError,
     "kernel height 9 is larger than the padded input"),
    (lambda: conv2d_forward(X, np.zeros((4, 3, 3, 11)), padding=1), ValueError,
     r"kernel width 11 is larger than the padded input width 8 \+ 2\*1"),
    (lambda: conv2d_forward(X, W, np.zeros(5)), ValueError, r"bias must have shape \(4,\)"),
    (lambda: conv2d_forward(X, W, stride=0), ValueError, "stride must be >= 1"),
    (lambda: conv2d_forward(X, W, stride=(1, 2, 3)), ValueError, "stride must be an int or"),
    (lambda: conv2d_forward(X, W, stride=1.0), TypeError, "stride must be an int"),
    (lambda: conv2d_forward(X, W, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: conv2d_forward(X, W, padding=True), TypeError, "padding must be an int"),
    (lambda: conv2d_forward(np.zeros((2, 0, 8, 8)), np.zeros((4, 0, 3, 3))), ValueError,
     "x must have C, H, W >= 1"),
    (lambda: conv2d_forward(X, np.zeros((0, 3, 3, 3))), ValueError,
     "weight must have every size >= 1"),
    (lambda: conv2d_forward(X, W, n_threads=0), ValueError, "n_threads"),
    (lambda: conv2d_forward(X, W, out=np.zeros((2, 4, 6, 5))), ValueError,
     r"out must have shape \(2, 4, 6, 6\)"),
    (lambda: conv2d_forward(X, W, out=np.zeros((2, 4, 6, 6), np.float32)), TypeError,
     "out must have dtype float64"),
    (lambda: conv2d_forward(X, W, out=np.zeros((2, 4, 6, 12))[..., ::2]), ValueError,
     "out must be C-contiguous"),
    (lambda: conv2d_forward(X, W, out=np.broadcast_to(0.0, (2, 4, 6, 6))), ValueError,
     "out must be"),
    (lambda: conv2d_forward(X, W, out=X.reshape(-1)[:288].reshape(2, 4, 6, 6)), ValueError,
     "out must not share memory"),
    (lambda: conv2d_backward_input(GY, W, (2, 3, 8)), ValueError, "input_shape must be a 4-tuple"),
    (lambda: conv2d_backward_input(GY, W, (2, 3, 8, 8.0)), TypeError, "input_shape must be an int"),
    (lambda: conv2d_backward_input(GY, W, (2, 2, 8, 8)), ValueError,
     "weight has 3 input channels but input_shape has 2"),
    (lambda: conv2d_backward_input(GY, W, (2, 3, 9, 8)), ValueError,
     r"conv2d_backward_input: grad_out must have shape \(2, 4, 7, 6\)"),
    (lambda: conv2d_backward_input(GY[:1], W, X.shape), ValueError, "grad_out must have shape"),
    (lambda: conv2d_backward_input(GY, W.astype(np.float32), X.shape), TypeError,
     "weight must have the same dtype as grad_out"),
    (lambda: conv2d_backward_weight(X, GY, (4, 3, 3)), ValueError,
     "kernel_shape must be a 4-tuple"),
    (lambda: conv2d_backward_weight(X, GY, (4, 2, 3, 3)), ValueError,
     "kernel_shape has 2 input channels but x has 3"),
    (lambda: conv2d_backward_weight(X, GY, (5, 3, 3, 3)), ValueError,
     r"grad_out must have shape \(2, 5, 6, 6\)"),
    (lambda: conv2d_backward_weight(X, GY.astype(np.float32), W.shape), TypeError,
     "grad_out must have the same dtype as x"),
    (lambda: conv2d_backward_weight(X, GY, W.shape, accumulate_into=np.zeros(4)), ValueError,
     "accumulate_into must be a pair"),
    (lambda: conv2d_backward_weight(X, GY, W.shape, accumulate_into=(np.zeros((4, 3, 3)), B)),
     ValueError, r"accumulate_into\[0\] must have shape \(4, 3, 3, 3\)"),
    (lambda: conv2d_backward_weight(X, GY, W.shape, accumulate_into=(W.copy(), np.zeros(3))),
     ValueError, r"accumulate_into\[1\] must have shape \(4,\)"),
    (lambda: conv2d_backward_weight(X, GY, W.shape,
                                    accumulate_into=(W.astype(np.float32), B)), TypeError,
     r"accumulate_into\[0\] must have dtype float64"),
    (lambda: conv2d_backward(X, W, GY[:, :3]), ValueError, r"grad_out must have shape \(2, 4"),
    (lambda: conv2d_backward(X, W, GY, accumulate_into=(W, B)), ValueError,
     r"accumulate_into\[0\] must not share memory"),
    (lambda: conv2d_backward(X, W, GY, out=np.zeros((2, 3, 8, 8), np.float32)), TypeError,
     "out must have dtype float64"),
])
def test_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_kernel_refuses_a_short_im2col_buffer():
    """The layer's kept im2col buffer is checked against K*P before any nogil code runs."""
    from fastconv._kernels import _conv2d
    x = np.zeros((1, 8, 5, 5), np.float32)
    w = np.zeros((4, 8, 3, 3), np.float32)
    y = np.zeros((1, 4, 3, 3), np.float32)
    short = np.zeros(8 * 9 * 9 - 1, np.float32)
    with pytest.raises(ValueError, match="K\\*P = 648"):
        _conv2d.conv2d_forward(x, w, None, y, 1, 1, 0, 0, 2, short)
    with pytest.raises(ValueError, match="K\\*P = 648"):
        _conv2d.conv2d_backward(x, y, None, None, np.zeros_like(w), np.zeros(4, np.float32),
                                True, 1, 1, 0, 0, 2, short)
    assert _conv2d.conv2d_forward(x, w, None, y, 1, 1, 0, 0, 2, np.zeros(648, np.float32))
