"""Recycled layer outputs (fastconv.nn._buffers): reuse only what nobody can see."""
import weakref

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn._buffers import CAPACITY, MIN_BYTES, BufferPool

BIG = (64, 64, 8)     # float32: 128 KiB, above MIN_BYTES


def test_min_bytes_below_big_shape():
    assert np.empty(BIG, np.float32).nbytes >= MIN_BYTES


def test_reuses_an_array_once_released():
    pool = BufferPool()
    a = pool.empty(BIG, np.float32)
    ref = weakref.ref(a)
    b = pool.empty(BIG, np.float32)
    assert b is not a                       # a is still held
    del a
    assert pool.empty(BIG, np.float32) is ref()


@pytest.mark.parametrize("hold", ["view", "list", "memoryview"])
def test_never_hands_out_an_array_that_is_still_referenced(hold):
    pool = BufferPool()
    a = pool.empty(BIG, np.float32)
    ref = weakref.ref(a)
    if hold == "view":
        keep = a[1:]
    elif hold == "list":
        keep = [a]
    else:
        keep = memoryview(a)
    del a
    assert pool.empty(BIG, np.float32) is not ref()
    del keep
    assert pool.empty(BIG, np.float32) is ref()


def test_shape_and_dtype_must_match():
    pool = BufferPool()
    a = pool.empty(BIG, np.float32)
    ref = weakref.ref(a)
    del a
    assert pool.empty(BIG, np.float64) is not ref()
    assert pool.empty((64, 64, 9), np.float32) is not ref()
    assert pool.empty(BIG, np.float32) is ref()


def test_small_arrays_are_not_kept_and_capacity_is_bounded():
    pool = BufferPool()
    pool.empty((4, 4), np.float32)
    assert len(pool) == 0
    held = [pool.empty(BIG, np.float32) for _ in range(CAPACITY + 3)]
    assert len(pool) == CAPACITY
    # A new shape evicts an unused array rather than growing the pool.
    del held
    pool.empty((64, 64, 16), np.float32)
    assert len(pool) == CAPACITY


def _model(seed=0):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return nn.Sequential(nn.Conv2d(1, 8, 3, dtype=f32, rng=rng), nn.Tanh(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, dtype=f32, rng=rng), nn.Sigmoid(),
                         nn.LPPool2d(2, 2), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 10, dtype=f32, rng=rng), nn.LogSoftmax())


def test_outputs_a_caller_holds_are_never_overwritten(rng):
    model = _model().train()
    x1 = rng.standard_normal((16, 1, 30, 30)).astype(np.float32)
    x2 = rng.standard_normal((16, 1, 30, 30)).astype(np.float32)
    outs, copies = [], []
    for _ in range(3):
        # Hold every intermediate result and the input gradient of each step.
        h = x1
        for m in model.layers:
            h = m.forward(h)
            outs.append(h)
            copies.append(h.copy())
        g = model.backward(np.ones_like(h))
        outs.append(g)
        copies.append(g.copy())
        model.forward(x2)
        model.backward(np.ones_like(h))
    for o, c in zip(outs, copies):
        np.testing.assert_array_equal(o, c)


def test_recycling_changes_no_number(rng):
    x = rng.standard_normal((16, 1, 30, 30)).astype(np.float32)
    t = rng.integers(0, 10, 16)
    results = []
    for recycle in (False, True):
        model = _model().train()
        if not recycle:
            model._empty = lambda shape, dtype: np.empty(shape, dtype=dtype)
            for m in model.modules():
                m._empty = model._empty
        params, grads = model.flat_parameters()
        crit = nn.NLLLoss()
        trace = []
        for _ in range(4):
            model.zero_grad()
            loss = crit.forward(model.forward(x), t)
            model.backward(crit.backward(), need_input_grad=False)
            params -= 0.1 * grads
            trace.append((loss, grads.copy()))
        results.append(trace)
    for (la, ga), (lb, gb) in zip(*results):
        assert la == lb
        np.testing.assert_array_equal(ga, gb)


def test_training_steps_reuse_memory_and_eval_releases_it(rng):
    model = _model().train()
    x = rng.standard_normal((16, 1, 30, 30)).astype(np.float32)
    ids = []
    for _ in range(4):
        y = model.forward(x)
        model.backward(np.ones_like(y))
        ids.append(id(model.layers[1]._y))
        del y
    assert len(set(ids[1:])) <= 2           # two alternating buffers at most
    assert sum(len(m._pool) for m in model.modules()) > 0
    model.eval()
    assert sum(len(m._pool) for m in model.modules()) == 0
    model.forward(x)
    assert sum(len(m._pool) for m in model.modules()) == 0
