"""Every registered layer's wrong-shape and wrong-dtype error names the layer (its index and
class in a Sequential) and the fix; every layer defaults to float32.

The layers come from the harness registry (``tests/layer_cases.py``), so a new layer is
checked here as soon as it has its case.
"""
import inspect

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn.module import _REGISTRY

from .layer_cases import CASES, make

NAMES = sorted(CASES)


def _first(m):
    return m.layers[0] if isinstance(m, nn.Sequential) else m


# Layers that take any float batch (activations, Dropout, Flatten) have no wrong shape.
FREE = [n for n in NAMES if _first(make(n)).input_ndim is None]


def _error(call, x):
    try:
        call(x)
    except (TypeError, ValueError) as exc:
        return exc
    return None


def _assert_names_layer_and_fix(exc, prefix, *fix):
    message = str(exc)
    assert message.startswith(prefix), message
    assert "\n" not in message
    assert any(f in message for f in fix), message


def _bad_inputs(name, m):
    """(what, input, error type, fix fragments) of the wrong inputs ``m`` must refuse."""
    shape = CASES[name][1]
    out = [("integer dtype", np.zeros(shape, np.int64), TypeError, ("astype(np.float32)",))]
    if m.params():
        out.append(("float64 into a float32 layer", np.zeros(shape), TypeError,
                    ("dtype=np.float64", "x.astype(np.float32)")))
    first = _first(m)
    if first.input_ndim == 4:
        out.append(("2-D into an image layer", np.zeros((2, 8), np.float32), ValueError,
                    ("(N, C, H, W)",)))
    if first.input_ndim == 2:
        out.append(("images into a Linear", np.zeros((2, 1, 2, 5), np.float32), ValueError,
                    ("put nn.Flatten() before this layer",)))
    if first.size_argument:
        wrong = list(shape)
        wrong[1] += 1
        out.append(("wrong channel count", np.zeros(wrong, np.float32), ValueError,
                    (f"{first.size_argument}={wrong[1]}",)))
    return out


# Flatten only reshapes: it takes any array, integers included.
@pytest.mark.parametrize("name", [n for n in NAMES if n != "Flatten"])
def test_wrong_input_errors_name_the_layer_and_the_fix(name):
    m = make(name, np.float32)
    cases = _bad_inputs(name, m)
    first = _first(m)
    inner = f", layer (1) {type(first).__name__}" if first is not m else ""
    for what, x, kind, fix in cases:
        in_seq = _error(nn.Sequential(m).forward, x)
        assert isinstance(in_seq, kind), (what, in_seq)
        _assert_names_layer_and_fix(in_seq, f"Sequential layer (1) {name}{inner}: ", *fix)
        alone = _error(m, x)
        assert isinstance(alone, kind), (what, alone)
        prefix = f"Sequential layer (1) {type(first).__name__}: " if inner else f"{name}: "
        _assert_names_layer_and_fix(alone, prefix, *fix)


@pytest.mark.parametrize("name", FREE)
def test_layers_without_shape_rules_take_any_float_batch(name):
    m = make(name, np.float32)
    for shape in ((3, 5), (2, 3, 4, 4)):
        assert m.forward(np.zeros(shape, np.float32)).shape[0] == shape[0]
    if name == "Flatten":
        assert m.forward(np.zeros((2, 3, 4), np.int64)).shape == (2, 12)


def test_the_index_is_the_failing_layers_place_in_the_model():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=rng), nn.Tanh(), nn.Linear(144, 10, rng=rng))
    with pytest.raises(ValueError) as info:
        model.forward(np.zeros((2, 1, 8, 8), np.float32))
    _assert_names_layer_and_fix(info.value, "Sequential layer (3) Linear: linear_forward: x "
                                            "must be 2-D", "put nn.Flatten() before this "
                                                           "layer (it turns (2, 4, 6, 6) into "
                                                           "(2, 144))")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=rng), nn.BatchNorm2d(3))
    with pytest.raises(ValueError) as info:
        model.forward(np.zeros((2, 1, 8, 8), np.float32))
    _assert_names_layer_and_fix(info.value, "Sequential layer (2) BatchNorm2d:",
                                "num_features=4 to match its input")


def test_summary_names_the_fix_too():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(72, 10))
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\).*put nn.Flatten\(\) before"):
        model.summary((1, 8, 8))


def test_every_layer_defaults_to_float32():
    assert nn.BatchNorm2d(3).weight.dtype == np.float32
    assert nn.BatchNorm2d(3).running_var.dtype == np.float32
    with_dtype = [cls for cls in _REGISTRY.values()
                  if "dtype" in inspect.signature(cls.__init__).parameters]
    assert len(with_dtype) >= 5
    for cls in with_dtype:
        assert inspect.signature(cls.__init__).parameters["dtype"].default is np.float32, cls
    # A first model with batch norm takes float32 data as it comes.
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Linear(72, 10))
    print(model.summary((1, 8, 8)))
