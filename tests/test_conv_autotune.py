"""set_conv_algorithm("benchmark"): each shape's algorithm measured once, cached on disk, and
read back by later processes, so that the bits stay the same; a damaged or unwritable cache
costs a measurement, never a failure."""
import json
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv import nn, optim
from fastconv.functional import _autotune
from fastconv.train import Trainer

SHAPE = ((32, 32, 3, 3), (1, 1), (1, 1), (4, 32, 16, 16))


@pytest.fixture
def bench_mode(tmp_path, monkeypatch):
    path = tmp_path / "algorithms.json"
    monkeypatch.setenv("FASTCONV_CONV_CACHE", str(path))
    _autotune.forget()
    old = F.set_conv_algorithm("benchmark")
    yield path
    F.set_conv_algorithm(old)
    _autotune.forget()


def _count_measurements(monkeypatch):
    calls = []
    real = _autotune._seconds
    monkeypatch.setattr(_autotune, "_seconds", lambda fn: (calls.append(1), real(fn))[1])
    return calls


def test_a_shape_is_measured_once_and_cached_on_disk(bench_mode, monkeypatch):
    calls = _count_measurements(monkeypatch)
    first = F.conv_algorithm(*SHAPE)
    assert first in ("im2col", "winograd", "winograd4")
    assert len(calls) == 3 * _autotune._ROUNDS
    assert F.conv_algorithm(*SHAPE) == first and len(calls) == 3 * _autotune._ROUNDS
    stored = json.loads(bench_mode.read_text())
    assert list(stored.values()) == [first]
    # Another process (this one, its memory dropped) reads the file instead of measuring,
    # whatever the file says.
    key = next(iter(stored))
    other = {"im2col": "winograd", "winograd": "winograd4", "winograd4": "im2col"}[first]
    bench_mode.write_text(json.dumps({key: other}))
    _autotune.forget()
    assert F.conv_algorithm(*SHAPE) == other and len(calls) == 3 * _autotune._ROUNDS


def test_each_pass_has_its_own_choice_and_other_shapes_are_not_measured(bench_mode):
    assert F.weight_grad_algorithm(*SHAPE) in ("im2col", "winograd")
    assert F.input_grad_algorithm(*SHAPE) in ("col2im", "transposed")
    kinds = sorted(key.split("|")[2] for key in json.loads(bench_mode.read_text()))
    assert "weight" in kinds and "input" in kinds
    before = bench_mode.read_text()
    assert F.conv_algorithm((32, 32, 5, 5), (1, 1), (2, 2), (4, 32, 16, 16)) == "im2col"
    assert F.conv_algorithm((32, 32, 3, 3), (2, 2), (1, 1), (4, 32, 8, 8)) == "im2col"
    assert bench_mode.read_text() == before


def test_a_damaged_cache_file_is_measured_over(bench_mode):
    bench_mode.write_bytes(b"\x00\xffnot json{")
    assert F.conv_algorithm(*SHAPE) in ("im2col", "winograd", "winograd4")
    assert len(json.loads(bench_mode.read_text())) == 1
    bench_mode.write_text(json.dumps(["a", "list"]))
    _autotune.forget()
    assert F.conv_algorithm(*SHAPE) in ("im2col", "winograd", "winograd4")


def test_an_unwritable_cache_warns_once_and_keeps_the_choice(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FASTCONV_CONV_CACHE", str(blocker / "sub" / "algorithms.json"))
    _autotune.forget()
    monkeypatch.setattr(_autotune, "_warned", [False])
    old = F.set_conv_algorithm("benchmark")
    try:
        with pytest.warns(RuntimeWarning, match="cannot write the convolution algorithm"):
            first = F.conv_algorithm(*SHAPE)
        calls = _count_measurements(monkeypatch)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert F.conv_algorithm(*SHAPE) == first and not calls
    finally:
        F.set_conv_algorithm(old)
        _autotune.forget()


def test_training_in_benchmark_mode_is_the_same_bits_on_any_thread_count(bench_mode):
    data = fastconv.datasets.load_mnist_sample(size=(40, 1))
    weights = []
    for threads in (2, 1, 3):
        model = nn.build_model("convnet-bn", seed=3)
        Trainer(model, optimizer=optim.spec("sgd", lr=0.05, momentum=0.9), batch_size=20,
                seed=2, threads=threads, progress=False, verbose=False).fit(
            data.train_x, data.train_y, epochs=1)
        weights.append(model.flat_parameters()[0].copy())
    assert all(np.array_equal(weights[0], w) for w in weights[1:])
    assert len(json.loads(bench_mode.read_text())) >= 3


@pytest.mark.parametrize("variable", ["FASTCONV_CONV_ALGORITHM", "FASTCONV_CONV_INPUT_GRAD"])
def test_a_misspelt_setting_in_the_environment_is_named_and_ignored(variable):
    import os
    import subprocess
    import sys
    code = ("import fastconv.functional as F; "
            "print(F.set_conv_algorithm('auto'), F.set_input_grad_algorithm('auto'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, variable: "winogard"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["auto", "auto"]
    assert f"{variable}='winogard' is not one of" in done.stderr
    assert "Traceback" not in done.stderr
