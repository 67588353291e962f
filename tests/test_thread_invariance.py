"""Results do not depend on the thread count: bitwise, for every layer and for training.

Every kernel splits its work into units fixed by the shapes alone (never by the thread
count) and adds partial results in a fixed order, so 1, 2, 3, 4 or 8 threads, and a count
that changes between steps, give the same bits. The shapes here are large enough for every
kernel to run in parallel (the serial thresholds are a few thousand elements), and the batch
sizes (1, 3, 5, 7) do not divide among 2, 3 or 4 threads.
"""
import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv.datasets import load_mnist_sample
from fastconv.train import homework_trainer

from .layer_cases import CASES, make

# 8 threads on a 2-core machine: more threads than cores, and than some regions' units.
THREADS = (1, 2, 3, 4, 8)
DTYPES = (np.float32, np.float64)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


def _grads(module):
    return [np.array(g) for g in module.grads()]


def _run_layer(make, x, grad_seed, threads, train=True):
    """Forward, backward and the parameter gradients of a fresh layer on ``threads``."""
    fastconv.set_num_threads(threads)
    layer = make()
    layer.train(train)
    y = layer.forward(x.copy())
    g = np.random.default_rng(grad_seed).standard_normal(y.shape).astype(y.dtype)
    layer.zero_grad()
    gx = layer.backward(g)
    return [np.array(y), np.array(gx)] + _grads(layer)


def _assert_same(results, what):
    ref = results[THREADS[0]]
    for t in THREADS[1:]:
        assert len(results[t]) == len(ref)
        for i, (a, b) in enumerate(zip(ref, results[t])):
            assert a.shape == b.shape
            if not np.array_equal(a, b, equal_nan=True):
                diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
                pytest.fail(f"{what}: output {i} differs between 1 and {t} threads "
                            f"(max abs diff {diff:.3g})")


def _conv(c, f, k, stride=1, padding=0, dtype=np.float32):
    return lambda: nn.Conv2d(c, f, k, stride=stride, padding=padding, dtype=dtype,
                             rng=np.random.default_rng(3))


# (name, layer factory taking dtype, input shape without the batch)
LAYERS = [
    # K <= P (the first layer's shape) and K > P (the second's), stride and padding.
    ("conv 1->16 5x5 on 32x32", lambda d: _conv(1, 16, 5, dtype=d), (1, 32, 32)),
    ("conv 16->16 5x5 on 14x14", lambda d: _conv(16, 16, 5, dtype=d), (16, 14, 14)),
    ("conv 24->8 3x3 pad 1 on 9x9", lambda d: _conv(24, 8, 3, padding=1, dtype=d),
     (24, 9, 9)),
    # Winograd's shape (3x3, stride 1, 32 channels, 2,304 output pixels a sample: its forward
    # pass and input gradient at every batch; tests/test_kernel_winograd.py checks the rule).
    ("conv 32->24 3x3 pad 1 on 48x48 (Winograd)",
     lambda d: _conv(32, 24, 3, padding=1, dtype=d), (32, 48, 48)),
    ("conv 3->8 3x3 stride 2 pad 1 on 20x20", lambda d: _conv(3, 8, 3, 2, 1, dtype=d),
     (3, 20, 20)),
    ("linear 300->70", lambda d: (lambda: nn.Linear(300, 70, dtype=d,
                                                    rng=np.random.default_rng(4))), (300,)),
    ("max pool 2x2", lambda d: (lambda: nn.MaxPool2d(2)), (16, 28, 28)),
    ("L2 pool 2x2", lambda d: (lambda: nn.LPPool2d(2, 2)), (16, 28, 28)),
    ("avg pool 3x3/2", lambda d: (lambda: nn.AvgPool2d(3, 2)), (16, 27, 27)),
    ("tanh", lambda d: (lambda: nn.Tanh()), (16, 28, 28)),
    ("sigmoid", lambda d: (lambda: nn.Sigmoid()), (16, 28, 28)),
    ("relu", lambda d: (lambda: nn.ReLU()), (16, 28, 28)),
    ("log-softmax", lambda d: (lambda: nn.LogSoftmax()), (2000,)),
    ("softmax", lambda d: (lambda: nn.Softmax(beta=0.7)), (2000,)),
    ("subtractive normalization", lambda d: (lambda: nn.SubtractiveNormalization(dtype=d)),
     (16, 14, 14)),
    ("contrastive normalization", lambda d: (lambda: nn.ContrastiveNormalization(dtype=d)),
     (16, 14, 14)),
    ("batch norm", lambda d: (lambda: nn.BatchNorm2d(16, dtype=d)), (16, 14, 14)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("batch", (1, 3, 7))
@pytest.mark.parametrize("name,factory,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_every_layer_gives_the_same_bits_on_any_thread_count(name, factory, shape, batch,
                                                              dtype):
    x = np.random.default_rng(batch).standard_normal((batch,) + shape).astype(dtype)
    make = factory(dtype)
    results = {t: _run_layer(make, x, 7, t) for t in THREADS}
    _assert_same(results, f"{name}, batch {batch}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rows", (1, 128, 400, 2000))
def test_losses_give_the_same_bits_on_any_thread_count(rows, dtype):
    rng = np.random.default_rng(0)
    for name, crit_cls, head in (("nll", nn.NLLLoss, nn.LogSoftmax), ("mse", nn.MSELoss, None),
                                 ("margin", nn.MarginLoss, None)):
        x = rng.standard_normal((rows, 10)).astype(dtype)
        # Every criterion takes class labels (MSELoss builds its +1/-1 target from them).
        target = rng.integers(0, 10, size=rows)
        results = {}
        for t in THREADS:
            fastconv.set_num_threads(t)
            out = head().forward(x) if head else x
            crit = crit_cls()
            loss = crit.forward(out, target)
            results[t] = [np.array(loss), np.array(crit.backward())]
        _assert_same(results, f"{name} loss, {rows} rows")


# (N, IN, OUT): the first MNIST linear layer's shape at batch 1 (cut by output features),
# 5 and 128 (cut by rows or columns: OUT == N), and a tall batch cut by rows.
LINEAR_SHAPES = [(1, 1600, 128), (5, 1600, 128), (128, 1600, 128), (300, 64, 10),
                 (2, 4000, 90)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=[f"{n}x{i}->{o}" for n, i, o in
                                                      LINEAR_SHAPES])
def test_linear_gives_the_same_bits_on_any_thread_count(shape, dtype):
    n, n_in, n_out = shape
    x = np.random.default_rng(n).standard_normal((n, n_in)).astype(dtype)
    make = lambda: nn.Linear(n_in, n_out, dtype=dtype, rng=np.random.default_rng(4))  # noqa: E731
    results = {t: _run_layer(make, x, 7, t) for t in THREADS}
    _assert_same(results, f"linear {n_in}->{n_out}, batch {n}")


@pytest.mark.parametrize("block", (7, 1 << 14))
def test_conv_with_many_channel_blocks(block):
    """Tiny im2col blocks: every geometry runs through many channel blocks and groups."""
    from fastconv._kernels import _conv2d
    old = _conv2d._set_block_elements(block)
    try:
        for batch in (1, 2, 5):
            x = np.random.default_rng(batch).standard_normal((batch, 12, 11, 11))
            results = {t: _run_layer(_conv(12, 5, 3, padding=1, dtype=np.float64), x, 1, t)
                       for t in THREADS}
            _assert_same(results, f"conv with blocks of {block} elements, batch {batch}")
    finally:
        _conv2d._set_block_elements(old)


MODELS = [
    ("convnet", {}),
    ("convnet-max", {}),
    ("convnet", {"extra_conv": True}),
    ("convnet", {"dropout": 0.5}),
    ("convnet", {"rotate": 0.2}),
    ("convnet", {"loss": "mse"}),
    ("convnet", {"loss": "margin"}),
    ("mlp", {}),
    ("linear", {}),
]


def _train(name, options, batch, threads, x, y, change_threads=False):
    loss = options.get("loss", "nll")
    model = nn.build_model(name, dtype=np.float32, seed=1, **options)
    trainer = homework_trainer(model, loss=loss, batch_size=batch, lr=0.01, seed=3,
                      threads=threads, progress=False, verbose=False)
    if change_threads:
        # A count that changes during the run: a different one for each epoch.
        for t in (3, 2):
            fastconv.set_num_threads(t)
            trainer.train_epoch(x, y)
    else:
        for _ in range(2):
            trainer.train_epoch(x, y)
    return [np.array(p) for p in model.params()]


@pytest.mark.parametrize("batch", (1, 5))
@pytest.mark.parametrize("name,options", MODELS,
                         ids=[n + "".join(f" {k}={v}" for k, v in o.items()) for n, o in MODELS])
def test_training_gives_the_same_weights_on_any_thread_count(name, options, batch):
    x, y, _, _ = _sample()
    results = {t: _train(name, options, batch, t, x, y) for t in THREADS}
    _assert_same(results, f"{name} {options}, batch {batch}")
    changing = _train(name, options, batch, 1, x, y, change_threads=True)
    fixed = {1: results[1], 2: changing}
    for a, b in zip(fixed[1], fixed[2]):
        assert np.array_equal(a, b), f"{name} {options}: a changing thread count differs"


_SAMPLE = None


def _sample():
    global _SAMPLE
    if _SAMPLE is None:
        d = load_mnist_sample(size=(9, 1))
        _SAMPLE = (d.train_x, d.train_y, d.test_x, d.test_y)
    return _SAMPLE


def _scaled(shape, name):
    """A case's input made large enough to run in parallel: batch 5 and, where the layer
    does not fix the spatial size (a Linear after it does), a 12x larger image."""
    if len(shape) == 4 and name != "Sequential":
        return (5, shape[1], shape[2] * 12, shape[3] * 12)
    return (5,) + tuple(shape[1:])


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_registered_layer_gives_the_same_bits_on_any_thread_count(name):
    """The layer harness's case of every registered module (tests/layer_cases.py), so that a
    new layer is covered without a line here."""
    x = np.random.default_rng(1).standard_normal(_scaled(CASES[name][1], name))
    results = {t: _run_layer(lambda: make(name, np.float64, 0), x, 5, t) for t in THREADS}
    _assert_same(results, f"{name} on input {x.shape}")


@pytest.mark.slow
@pytest.mark.parametrize("batch", (33, 70))
@pytest.mark.parametrize("name", ["maxpool", "cifar", "cifar-bn"])
def test_benchmark_nets_train_to_the_same_weights_on_any_thread_count(name, batch):
    """The max-pool ConvNet and the CIFAR-shaped nets of bench/compare_torch.py, three SGD
    steps at batches that cut the convolutions into row tiles and sample groups of several
    samples (33) and into whole samples (70)."""
    from bench.compare_torch import MODEL_INPUTS, FastconvTrainer, build_fastconv_model
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch,) + MODEL_INPUTS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    results = {}
    for t in THREADS:
        fastconv.set_num_threads(t)
        trainer = FastconvTrainer(build_fastconv_model(name))
        for _ in range(3):
            trainer.step(x, y)
        results[t] = [np.array(p) for p in trainer.model.params()]
    _assert_same(results, f"{name}, batch {batch}")
