"""End-to-end training on the committed real-MNIST subset (fastconv/datasets/mnist_sample)."""
import csv
import json
import os

import numpy as np
import pytest

from fastconv import nn
from fastconv.cli import main as cli_main
from fastconv.datasets import load_mnist
from fastconv.serialization import load_model
from fastconv.train import homework_trainer, TrainingDiverged

from fastconv.datasets import SAMPLE_FOLDER  # noqa: E402

DATA = SAMPLE_FOLDER       # the MNIST sample shipped in the (installed) package


@pytest.fixture(scope="module")
def subset():
    with open(os.path.join(DATA, "sha256.json")) as f:
        sha = json.load(f)
    return load_mnist(DATA, dtype=np.float32, expected_sha256=sha, offline=True)


def _trainer(tmp, model, **kw):
    opts = dict(loss="nll", optimizer="sgd", lr=1e-2, batch_size=1, seed=4, save_dir=tmp,
                progress=False, verbose=False)
    opts.update(kw)
    return homework_trainer(model, **opts)


def test_training_lowers_loss_and_beats_chance(subset, tmp_path):
    model = nn.build_model("convnet", dtype=np.float32, seed=1)
    trainer = _trainer(str(tmp_path), model)
    before = trainer.evaluate(subset.test_x, subset.test_y)
    history = trainer.fit(subset.train_x, subset.train_y, subset.test_x, subset.test_y,
                          epochs=2)
    assert history[-1]["test_loss"] < 0.5 * before["loss"]
    assert history[-1]["test_accuracy"] > 0.75      # chance is 0.10
    assert history[1]["loss"] < history[0]["loss"]
    with open(tmp_path / "train.log") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "mean_class_accuracy", "seconds"}
    with open(tmp_path / "test.log") as f:
        test_rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in test_rows] == ["1", "2"]
    # test.log times the evaluation, not the training epoch
    assert all(0 < float(t["seconds"]) < float(r["seconds"]) for t, r in zip(test_rows, rows))
    assert (tmp_path / "model.npz").exists()
    loaded, meta = load_model(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.forward(subset.test_x[:50]),
                                  model.eval().forward(subset.test_x[:50]))
    assert meta["epoch"] == 2


@pytest.mark.parametrize("optimizer, extra", [
    ("sgd", dict(momentum=0.9, lr=5e-3)),
    ("asgd", dict(lr=1e-2, t0_epochs=0.5)),
    ("lbfgs", dict(lr=0.5, batch_size=50, max_iter=3)),
    ("cg", dict(batch_size=50, max_iter=3)),
    ("sgd", dict(switch_to_lbfgs_after=1, batch_size=20)),
])
@pytest.mark.slow
def test_resume_after_interruption_equals_uninterrupted_run(subset, tmp_path, optimizer,
                                                            extra):
    x, y = subset.train_x[:200], subset.train_y[:200]

    def model():
        return nn.build_model("convnet-max", dtype=np.float32, rotate=0.2, dropout=0.3, seed=9)

    full = _trainer(str(tmp_path / "a"), model(), optimizer=optimizer, **extra)
    full.fit(x, y, epochs=3)
    part = _trainer(str(tmp_path / "b"), model(), optimizer=optimizer, **extra)
    part.fit(x, y, epochs=2)
    del part                                     # "killed" after epoch 2's checkpoint
    resumed = _trainer(str(tmp_path / "b"), model(), optimizer=optimizer, **extra)
    resumed.fit(x, y, epochs=3)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    np.testing.assert_array_equal(resumed.params, full.params)


def test_divergence_stops_before_the_update_and_keeps_logs(subset, tmp_path):
    x = subset.train_x[:40].copy()
    y = subset.train_y[:40]
    model = nn.build_model("linear", dtype=np.float32, seed=1)
    trainer = _trainer(str(tmp_path), model, batch_size=40)
    trainer.fit(x, y, epochs=1)
    before = trainer.params.copy()
    x[3] = np.nan
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2"):
        trainer.fit(x, y, epochs=2)
    np.testing.assert_array_equal(trainer.params, before)
    assert (tmp_path / "train.log").read_text().count("\n") == 2


def test_cli_train_test_predict(mnist_dir, tmp_path, capsys):
    save = tmp_path / "run"
    assert cli_main(["train", "--data", mnist_dir, "--size", "small", "--model", "linear",
                     "--type", "float", "--epochs", "1", "--learning-rate", "0.01",
                     "--save", str(save), "--progress", "off", "--visualize",
                     "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "ConfusionMatrix" in out and "test: loss" in out
    assert (save / "inputs.png").exists()
    assert cli_main(["test", "--data", mnist_dir, "--size", "small",
                     "--model-file", str(save / "model.npz")]) == 0
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1][:-1])
    assert accuracy > 80
    csv_path = tmp_path / "pred.csv"
    assert cli_main(["predict", "--data", mnist_dir, "--size", "small",
                     "--model-file", str(save / "model.npz"), "--output", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "Id,Prediction" and lines[1].startswith("1,") and len(lines) == 1001


def test_cli_help_lists_every_homework_option(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--seed", "--threads", "--size", "--model", "--loss", "--optimization",
                   "--learning-rate", "--batch-size", "--weight-decay", "--momentum", "--t0",
                   "--max-iter", "--type", "--save", "--epochs", "--rotate",
                   "--switch-to-lbfgs-after", "--data", "--visualize"):
        assert option in text


def test_cli_reports_divergence_and_exits_nonzero(mnist_dir, tmp_path, capsys):
    save = tmp_path / "diverge"
    status = cli_main(["train", "--data", mnist_dir, "--size", "small", "--model", "linear",
                       "--type", "float", "--epochs", "1", "--learning-rate", "1e35",
                       "--save", str(save), "--progress", "off", "--threads", "1"])
    assert status == 1
    err = capsys.readouterr().err
    assert "training diverged at epoch 1, step" in err and "logs" in err


def test_fit_on_a_dataset_stores_its_normalization_in_the_model(tmp_path):
    """A model trained from a Dataset carries the normalization predict needs (a model
    trained on bare arrays has none, and predict then has to refit it or refuse)."""
    from fastconv.datasets import load_mnist_sample
    from fastconv.serialization import load_model
    data = load_mnist_sample(size=(40, 20))
    model = nn.build_model("linear", seed=1)
    trainer = homework_trainer(model, batch_size=10, save_dir=str(tmp_path), progress=False,
                      verbose=False)
    history = trainer.fit(data, epochs=1)
    assert len(history) == 1
    _, meta = load_model(str(tmp_path / "model.npz"))
    assert meta["normalization"] == data.normalization.to_dict()
    assert meta["dataset"]["n_classes"] == 10
    with pytest.raises(ValueError, match="give a Dataset alone"):
        homework_trainer(nn.build_model("linear", seed=1), progress=False,
                verbose=False).fit(data, data.train_y)
