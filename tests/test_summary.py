"""model.summary() and the repr: settings, output shapes, parameter counts, totals."""
import numpy as np
import pytest

from fastconv import nn


def test_summary_lists_every_layer_with_shapes_and_counts():
    model = nn.build_model("convnet", extra_conv=True, seed=1)
    s = model.summary((1, 32, 32))
    shapes = [r["output_shape"] for r in s.rows]
    assert shapes[0] == (1, 64, 28, 28)
    assert (1, 1600) in shapes and shapes[-1] == (1, 10)
    convs = [r for r in s.rows if r["type"] == "Conv2d"]
    assert [c["n_parameters"] for c in convs] == [64 * 25 + 64, 64 * 64 * 25 + 64,
                                                   64 * 64 * 9 + 64]
    assert "kernel 3x3, stride 1, padding 1" in convs[2]["settings"]
    assert sum(r["n_parameters"] for r in s.rows) == s.n_parameters == model.n_parameters()
    text = str(s)
    assert f"{model.n_parameters():,}" in text and "(1, 64, 28, 28)" in text
    assert "float32" in text


def test_summary_without_input_shape_and_leaves_training_mode():
    model = nn.build_model("mlp", dropout=0.5, seed=1)
    s = model.summary()
    assert all(r["output_shape"] is None for r in s.rows)
    model.summary((1, 32, 32))
    assert all(m.training for m in model.modules())


def test_summary_names_the_layer_that_cannot_take_its_input():
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 3))
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\).*\(1, 1024\)"):
        model.summary((1, 32, 32))


def test_summary_expands_nested_containers():
    model = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), nn.Tanh())
    s = model.summary((1, 2, 2))
    assert [r["index"] for r in s.rows] == ["1.1", "1.2", "2"]


def test_repr_shows_kernel_size_stride_and_padding():
    text = repr(nn.Conv2d(1, 8, 3, stride=2, padding=1))
    assert "kernel_size=(3, 3)" in text and "stride=(2, 2)" in text
    assert "padding=(1, 1)" in text
    assert "kernel_size=(2, 2), stride=(2, 2)" in repr(nn.MaxPool2d(2))


def test_layers_builders_and_loaders_share_the_float32_default():
    assert nn.Conv2d(1, 2, 3).weight.dtype == np.float32
    assert nn.Linear(2, 3).weight.dtype == np.float32
    assert nn.SubtractiveNormalization(7).kernel.dtype == np.float32
    assert nn.build_model("convnet").dtype == np.float32
    import inspect

    from fastconv.datasets import load_mnist
    assert inspect.signature(load_mnist).parameters["dtype"].default is np.float32


def test_layer_dtype_and_shape_mismatch_say_how_to_fix():
    conv = nn.Conv2d(3, 2, 3)
    with pytest.raises(TypeError, match=r"x.astype\(np.float32\).*model.astype\(np.float64\)"):
        conv.forward(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="expects 3 input channels.*summary"):
        conv.forward(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="expects 5 features"):
        nn.Linear(5, 2).forward(np.zeros((2, 4), np.float32))
