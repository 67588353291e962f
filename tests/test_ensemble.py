"""Ensembles: :class:`fastconv.nn.Ensemble` against a NumPy reference, :func:`load_ensemble`,
and ``fastconv test`` / ``predict`` with several ``--model-file``s.

The CLI tests train three linear models for a second on the MNIST sample shipped with the
package, one of them on fewer images so that its input normalization differs: each member
must see the test images prepared its own way.
"""
import csv
import io
import re

import numpy as np
import pytest

from fastconv import Trainer, load_ensemble, nn, optim
from fastconv.datasets import SAMPLE_FOLDER, load_idx_folder, load_mnist_sample
from fastconv.serialization import EnsembleError, ModelFileError, save_model

from .gradcheck import check_vjp
from .test_cli_errors import assert_one_line_error, run_cli


def _small(loss="nll", seed=1, dtype=np.float64, n_classes=10):
    """A small random network (6x6 inputs) with the head of ``loss``."""
    rng = np.random.default_rng(seed)
    layers = [nn.Conv2d(1, 3, 3, dtype=dtype, rng=rng), nn.Tanh(), nn.Flatten(),
              nn.Linear(48, n_classes, dtype=dtype, rng=rng)]
    head = nn.LOSSES[loss].head
    if head == "LogSoftmax":
        layers.append(nn.LogSoftmax())
    elif head == "Tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers).eval()


def _x(rng, n=5, dtype=np.float64):
    return rng.standard_normal((n, 1, 6, 6)).astype(dtype)


# -- the module -----------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["nll", "mse", "margin"])
def test_ensemble_of_one_is_the_model(loss, rng):
    model = _small(loss)
    x = _x(rng)
    ensemble = nn.Ensemble([model]).eval()
    y = ensemble.forward(x)
    np.testing.assert_array_equal(y, model.forward(x))
    g = rng.standard_normal(y.shape)
    model.zero_grad()
    ensemble.zero_grad()
    grad_x = ensemble.backward(g)
    grads = [a.copy() for a in model.grads()]
    model.zero_grad()
    np.testing.assert_allclose(grad_x, model.backward(g), rtol=1e-14, atol=1e-14)
    for a, b in zip(grads, model.grads()):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("n_members", [2, 3])
def test_mean_probability_against_numpy(n_members, rng):
    members = [_small("nll", seed=s) for s in range(n_members)]
    xs = [_x(rng) for _ in members]
    ensemble = nn.Ensemble(members, input_shape=(1, 6, 6))
    probs = np.mean([np.exp(m.forward(x)) for m, x in zip(members, xs)], axis=0)
    y = ensemble.forward(xs)
    np.testing.assert_allclose(y, np.log(probs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(y).sum(axis=1), 1, rtol=1e-12)
    # One array for every member is the same as that array given to each.
    np.testing.assert_array_equal(ensemble.forward(xs[0]), ensemble.forward([xs[0]] * n_members))


@pytest.mark.parametrize("loss", ["mse", "margin"])
def test_other_heads_average_the_outputs(loss, rng):
    members = [_small(loss, seed=s) for s in range(3)]
    x = _x(rng)
    ensemble = nn.Ensemble(members)
    np.testing.assert_allclose(ensemble.forward(x), np.mean([m.forward(x) for m in members], 0),
                               rtol=1e-12, atol=1e-12)
    assert ensemble.head == ("Tanh" if loss == "mse" else "Linear")


def test_very_unlikely_classes_keep_a_finite_log_probability():
    ensemble = nn.Ensemble([_small(seed=s) for s in range(2)])
    outputs = [np.full((1, 3), -1000.0), np.full((1, 3), -1001.0)]
    y = ensemble.combine(outputs)
    np.testing.assert_allclose(y, -1000 + np.log((1 + np.exp(-1)) / 2), rtol=1e-14)


@pytest.mark.parametrize("loss", ["nll", "mse"])
@pytest.mark.parametrize("shared", [True, False], ids=["one input", "one per member"])
def test_backward_against_finite_differences(loss, shared, rng):
    members = [_small(loss, seed=s) for s in range(3)]
    ensemble = nn.Ensemble(members)
    x0 = _x(rng, n=2)
    others = [_x(rng, n=2) for _ in members[1:]]

    def inputs(x):
        return x if shared else [x] + others

    def forward(x):
        return ensemble.forward(inputs(x))

    def backward(x, y, g):
        ensemble.forward(inputs(x))
        grad = ensemble.backward(g)
        return grad if shared else grad[0]

    check_vjp(forward, backward, x0, rng)


def test_parameter_gradients_are_each_members_share(rng):
    members = [_small(seed=s) for s in range(2)]
    ensemble = nn.Ensemble(members)
    x = _x(rng, n=3)
    g = rng.standard_normal((3, 10))
    ensemble.zero_grad()
    y = ensemble.forward(x)
    ensemble.backward(g)
    for m in members:
        expected = [a.copy() for a in m.grads()]
        m.zero_grad()
        m.forward(x)
        m.backward(g * np.exp(m.forward(x) - y) / 2)
        for a, b in zip(expected, m.grads()):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("models, error, message", [
    ([], ValueError, "models is empty"),
    ("m", TypeError, "member 0 must be a Module"),
    ([_small("nll"), _small("mse")], ValueError,
     r"different heads \(member 0 in LogSoftmax, member 1 in Tanh\)"),
    ([_small(), _small(n_classes=5)], ValueError,
     r"member 1 gives outputs of shape \(5,\) per sample, member 0 \(10,\)"),
])
def test_members_that_cannot_vote_together_are_refused(models, error, message):
    with pytest.raises(error, match=message):
        nn.Ensemble(models, input_shape=(1, 6, 6))


def test_one_model_and_the_same_model_twice_are_refused():
    model = _small()
    with pytest.raises(TypeError, match=r"pass \[model\]"):
        nn.Ensemble(model)
    with pytest.raises(ValueError, match="the same Sequential"):
        nn.Ensemble([model, model])


def test_member_errors_name_the_member(rng):
    ensemble = nn.Ensemble([_small(), _small(n_classes=5)])
    with pytest.raises(ValueError, match="member 1 gave outputs of shape"):
        ensemble.forward(_x(rng))
    with pytest.raises(ValueError, match="Ensemble member 0: .*Conv2d"):
        ensemble.forward(rng.standard_normal((2, 2, 6, 6)))
    with pytest.raises(ValueError, match="got 1 inputs for 2 members"):
        ensemble.forward([_x(rng)])
    with pytest.raises(NotImplementedError, match="load_ensemble"):
        ensemble.config()


# -- files and the command ------------------------------------------------------------------
@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three linear models trained on the sample, the third with another normalization;
    their paths and each one's test inputs prepared its own way."""
    folder = tmp_path_factory.mktemp("ensemble")
    paths, inputs = [], []
    for seed, n_train in ((1, 300), (2, 300), (3, 500)):
        data = load_mnist_sample(size=(n_train, 200))
        model = nn.build_model("linear", seed=seed)
        Trainer(model, optimizer=optim.spec("sgd", lr=0.05), batch_size=10, seed=seed, progress=False,
                verbose=False).fit(data.train_x, data.train_y, epochs=2)
        path = folder / f"model{seed}.npz"
        save_model(path, model, {**data.metadata(), "loss": "nll"})
        paths.append(path)
        inputs.append(load_idx_folder(SAMPLE_FOLDER, normalize=data.normalization).test_x)
    labels = load_mnist_sample(size=(1, 200)).test_y
    assert inputs[0] is not inputs[2] and not np.array_equal(inputs[0], inputs[2])
    return paths, inputs, labels


def _reference(paths, inputs):
    """Mean class probability of the models in ``paths`` on their inputs, in float64."""
    from fastconv import load_model

    models = [load_model(p)[0] for p in paths]
    return np.mean([np.exp(m.forward(x).astype(np.float64)) for m, x in zip(models, inputs)],
                   axis=0)


def test_load_ensemble(members):
    paths, inputs, labels = members
    ensemble, metadata = load_ensemble(paths)
    assert len(ensemble) == 3 and ensemble.head == "LogSoftmax" and not ensemble.training
    assert [m["normalization"] for m in metadata][0] != metadata[2]["normalization"]
    np.testing.assert_allclose(np.exp(ensemble.forward(inputs)), _reference(paths, inputs),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cli_test_prints_the_ensembles_accuracy(members):
    paths, inputs, labels = members
    status, out, err = run_cli("test", "--dataset", "idx", "--data", SAMPLE_FOLDER,
                               "--model-file", *paths)
    assert status == 0, err
    assert out.startswith("ensemble of 3 models, the mean of their class probabilities:")
    expected = np.mean(np.argmax(_reference(paths, inputs), axis=1) == labels)
    last = out.strip().splitlines()[-1]
    assert last == f"test accuracy: {100 * expected:.2f}% (ensemble of 3 models)"
    assert expected > 0.7
    # Each member's line says what testing it alone says.
    for path in paths:
        status, alone, err = run_cli("test", "--dataset", "idx", "--data", SAMPLE_FOLDER,
                                     "--model-file", path)
        assert status == 0, err
        accuracy = re.fullmatch(r"test accuracy: (\S+)", alone.strip().splitlines()[-1])[1]
        assert f"  {path}: test accuracy {accuracy}\n" in out


def test_cli_predict_with_several_model_files(members, tmp_path):
    paths, inputs, labels = members
    raw = load_idx_folder(SAMPLE_FOLDER, size=(1, 4), normalize=False).test_x[:, 0, 2:30, 2:30]
    np.save(tmp_path / "digits.npy", raw)
    # IMAGE files may follow the model files: the list ends at the first non-.npz name.
    status, out, err = run_cli("predict", "--model-file", *paths, tmp_path / "digits.npy")
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    probs = np.array([[float(r[f"p{k}"]) for k in range(10)] for r in rows])
    from fastconv import load_model
    from fastconv.datasets.images import prepare_digits, read_digit_images

    names, images = read_digit_images([tmp_path / "digits.npy"])
    expected = np.mean([np.exp(load_model(p)[0].forward(prepare_digits(
        images, meta["normalization"])).astype(np.float64))
        for p, meta in zip(paths, load_ensemble(paths)[1])], axis=0)
    np.testing.assert_allclose(probs, expected, atol=6e-5)
    assert [int(r["label"]) for r in rows] == list(np.argmax(expected, axis=1))

    # Without IMAGE: the test split's Id,Prediction CSV.
    status, out, err = run_cli("predict", "--dataset", "idx", "--data", SAMPLE_FOLDER,
                               "--model-file", *paths, "--output", tmp_path / "p.csv")
    assert status == 0, err
    assert out.strip() == f"wrote 200 predictions of the ensemble of 3 models to " \
                          f"{tmp_path / 'p.csv'}"
    pred = [int(r["Prediction"]) for r in csv.DictReader(open(tmp_path / "p.csv"))]
    assert pred == list(np.argmax(_reference(paths, inputs), axis=1))


def _other_data_set(tmp_path):
    path = tmp_path / "fashion.npz"
    save_model(path, nn.build_model("linear", seed=4),
               {"dataset": {"name": "fashion-mnist", "input_shape": [1, 32, 32],
                            "n_classes": 10, "padding": 2}, "loss": "nll"})
    return path


def _other_head(tmp_path):
    path = tmp_path / "mse.npz"
    save_model(path, nn.build_model("linear", loss="mse", seed=4),
               {**load_mnist_sample(size=(10, 1)).metadata(), "loss": "mse"})
    return path


@pytest.mark.parametrize("make, fragments", [
    (_other_data_set, ["were trained on different data sets", "fashion-mnist",
                       "trained on one data set"]),
    (_other_head, ["ends in LogSoftmax", "in Tanh", "trained with one --loss"]),
])
def test_members_that_disagree_are_one_line(members, tmp_path, make, fragments):
    paths = members[0]
    odd = make(tmp_path)
    with pytest.raises(EnsembleError):
        load_ensemble([paths[0], odd])
    for command in ("test", "predict"):
        status, _, err = run_cli(command, "--dataset", "idx", "--data", SAMPLE_FOLDER,
                                 "--model-file", paths[0], odd, cwd=tmp_path)
        assert_one_line_error(status, err, 1, f"fastconv {command}: error:", str(paths[0]),
                              str(odd), *fragments)


def test_missing_and_damaged_member_files_are_one_line(members, tmp_path):
    paths = members[0]
    damaged = tmp_path / "damaged.npz"
    data = paths[1].read_bytes()
    damaged.write_bytes(data[:len(data) // 2])
    for bad, message in ((tmp_path / "missing.npz", "no such model file"),
                         (damaged, "truncated or corrupt")):
        with pytest.raises(ModelFileError, match=message):
            load_ensemble([paths[0], bad])
        status, _, err = run_cli("test", "--model-file", paths[0], bad, cwd=tmp_path)
        assert_one_line_error(status, err, 1, f"model file {bad}", message, "--model-file")
