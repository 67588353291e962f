"""The composable Trainer: optimizers as registered specs, schedules and callbacks as parts,
validation held out of the training set, and resume that carries every part's state."""
import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastconv import cli, nn, optim
from fastconv.callbacks import BestModel, EarlyStopping
from fastconv.datasets import load_mnist_sample
from fastconv.optim._base import Optimizer
from fastconv.serialization import load_model, read_npz
from fastconv.train import SettingsMismatch, Trainer, homework_trainer, stratified_split

from .test_cli_errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sample():
    data = load_mnist_sample(size=(300, 100))
    return data.train_x, data.train_y, data.test_x, data.test_y


def _trainer(folder=None, optimizer=None, **kw):
    opts = dict(batch_size=20, seed=5, progress=False, verbose=False,
                save_dir=str(folder) if folder else None)
    opts.update(kw)
    return Trainer(nn.build_model("linear", seed=1),
                   optimizer=optimizer or optim.spec("adam", lr=1e-3), **opts)


def test_the_constructor_takes_no_optimizer_option():
    names = set(inspect.signature(Trainer.__init__).parameters)
    assert names == {"self", "model", "loss", "optimizer", "schedule", "batch_size",
                     "callbacks", "seed", "threads", "save_dir", "progress", "metadata",
                     "verbose"}
    with pytest.raises(TypeError):
        Trainer(nn.build_model("linear"), lr=0.1)


def test_specs_check_names_and_values_at_once():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        optim.spec("adamm")
    with pytest.raises(ValueError, match="optimizer 'adam' has no option momentum"):
        optim.spec("adam", momentum=0.9)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.spec("sgd", lr=-1.0)
    spec = optim.homework_optimizer("sgd", switch_to_lbfgs_after=2, lbfgs_mode="batch",
                                    lbfgs_batch_size=100)
    assert optim.as_spec(json.loads(json.dumps(spec.settings()))) == spec


class Halving(Optimizer):
    """A toy optimizer of the test: x -= lr * g, lr halved after every step."""

    def __init__(self, params, lr=0.1):
        super().__init__(params)
        self.lr = float(lr)
        self.n = 0

    def step(self, closure):
        loss, grad = self._evaluate(closure, copy=False)
        self.params -= self.params.dtype.type(self.lr * 0.5 ** self.n) * grad
        self.n += 1
        return [loss]

    def state_dict(self):
        return {"optimizer": "Halving", "lr": self.lr, "n": self.n}

    def load_state_dict(self, d):
        self._check_state_name(d)
        self.lr, self.n = float(d["lr"]), int(d["n"])


@pytest.fixture
def toy_optimizer():
    optim.register_optimizer("halving")(Halving)
    yield "halving"
    del optim.OPTIMIZERS["halving"]


def test_a_new_optimizer_is_one_class_and_a_registration(toy_optimizer, sample, tmp_path):
    x, y, _, _ = sample
    first = _trainer(tmp_path / "a", optim.spec("halving", lr=0.05))
    first.fit(x, y, epochs=1)
    resumed = _trainer(tmp_path / "a", optim.spec("halving", lr=0.05))
    resumed.fit(x, y, epochs=2)
    straight = _trainer(tmp_path / "b", optim.spec("halving", lr=0.05))
    straight.fit(x, y, epochs=2)
    assert resumed.optimizer.n == 2 * 15
    assert np.array_equal(resumed.params, straight.params)
    # ... and the command line offers it without a change to the CLI.
    code = cli.main(["train", "--dataset", "idx", "--data", _sample_folder(), "--size",
                     "full", "--model", "linear", "--optimizer", "halving",
                     "--optimizer-option", "lr=0.01", "--epochs", "1", "--batch-size", "50",
                     "--save", str(tmp_path / "cli"), "--progress", "off"])
    assert code == 0
    meta = read_npz(str(tmp_path / "cli" / "checkpoint.npz"), "checkpoint")
    settings = json.loads(str(meta["__meta__"]))["settings"]
    assert settings["optimizer"] == {"name": "halving", "lr": 0.01}


def _sample_folder():
    from fastconv.datasets import SAMPLE_FOLDER
    return SAMPLE_FOLDER


def test_stratified_split_keeps_class_shares_and_is_seeded():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, val = stratified_split(y, 20, np.random.default_rng(1))
    assert np.bincount(y[val]).tolist() == [10, 6, 3, 1]
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == y.size
    again = stratified_split(y, 20, np.random.default_rng(1))[1]
    other = stratified_split(y, 20, np.random.default_rng(2))[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


def test_validation_is_held_out_logged_and_recorded(sample, tmp_path):
    x, y, tx, ty = sample
    trainer = _trainer(tmp_path, callbacks=[BestModel("val_accuracy")])
    history = trainer.fit(x, y, tx, ty, epochs=2, validation=0.2)
    assert trainer._n_train == 240 and trainer.order.size == 240
    assert all({"val_loss", "val_accuracy", "test_accuracy"} <= set(h) for h in history)
    assert (tmp_path / "val.log").read_text().count("\n") == 3
    settings = trainer.settings()
    assert settings["validation"] == {"count": 60, "stratified": True, "seed": 5}
    # Held-out samples are never trained on: the order never lists them.
    _, val_rows = stratified_split(y, 60, np.random.default_rng(
        np.random.SeedSequence([5, 2])))
    assert np.intersect1d(trainer.order, val_rows).size == 0
    # Another split is another run.
    with pytest.raises(SettingsMismatch, match="validation"):
        _trainer(tmp_path, callbacks=[BestModel("val_accuracy")]).fit(
            x, y, epochs=3, validation=0.3)


def test_best_model_keeps_the_best_validation_epoch(sample, tmp_path):
    x, y, _, _ = sample
    best = BestModel("val_loss")
    trainer = _trainer(tmp_path, optim.spec("sgd", lr=2.0, lr_decay=0), callbacks=[best])
    history = trainer.fit(x, y, epochs=4, validation=100)
    losses = [h["val_loss"] for h in history]
    assert best.epoch == 1 + int(np.argmin(losses)) and best.value == min(losses)
    model, meta = load_model(str(tmp_path / "best_model.npz"))
    assert meta["best"] == {"monitor": "val_loss", "value": best.value, "epoch": best.epoch}
    copy = nn.build_model("linear", seed=9)
    best.load_into(copy)
    assert np.array_equal(copy.flat_parameters()[0], model.flat_parameters()[0])


def test_early_stopping_stops_and_stays_stopped(sample, tmp_path):
    x, y, _, _ = sample
    # A learning rate far too large: the validation loss stops improving at once.
    stop = EarlyStopping("val_accuracy", patience=1, min_delta=0.5)
    trainer = _trainer(tmp_path, optim.spec("sgd", lr=0.01), callbacks=[stop])
    trainer.fit(x, y, epochs=10, validation=50)
    assert stop.stopped_epoch == 2 and trainer.epoch == 2
    again = _trainer(tmp_path, optim.spec("sgd", lr=0.01),
                     callbacks=[EarlyStopping("val_accuracy", patience=1, min_delta=0.5)])
    again.fit(x, y, epochs=10, validation=50)
    assert again.epoch == 2


def test_plateau_follows_the_validation_loss(sample):
    x, y, _, _ = sample
    plateau = optim.build_schedule("plateau", factor=0.5, patience=0)
    trainer = _trainer(None, optim.spec("sgd", lr=5.0, lr_decay=0), schedule=plateau)
    history = trainer.fit(x, y, epochs=4, validation=50)
    reference = optim.build_schedule("plateau", factor=0.5, patience=0).bind(5.0, 15)
    expected = []
    for h in history:
        expected.append(reference.lr_at(0))
        reference.observe(h["val_loss"])
    assert [h["lr"] for h in history] == expected
    assert len(set(expected)) > 1      # it did lower the rate


def test_onecycle_sets_the_learning_rate_and_momentum_of_every_update(sample):
    x, y, _, _ = sample
    seen = []

    class Recording(optim.Adam):
        def step(self, closure):
            seen.append((self.lr, self.beta1))
            return super().step(closure)

    cycle = optim.OneCycleLR(max_lr=0.01, epochs=2)
    trainer = _trainer(None, optim.spec("adam"), schedule=cycle)
    trainer.optimizer_spec.build = lambda params, ctx: Recording(params)
    trainer.fit(x, y, epochs=2)
    steps = 2 * 15
    assert len(seen) == steps
    reference = optim.OneCycleLR(max_lr=0.01, epochs=2).bind(1e-3, 15, 0.9)
    assert seen == [(reference.lr_at(t), reference.momentum_at(t)) for t in range(steps)]


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from fastconv import nn, optim
    from fastconv.callbacks import BestModel
    from fastconv.datasets import load_mnist_sample
    from fastconv.train import Trainer

    data = load_mnist_sample(size=(300, 100))
    kill_at = int(sys.argv[2])

    class Killing(optim.Adam):
        def step(self, closure):
            if kill_at and self.n_updates == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().step(closure)

    optim.OPTIMIZERS["adam"] = Killing
    model = nn.build_model("convnet-bn", rotate=0.2, dropout=0.2, seed=1)
    trainer = Trainer(model, optimizer=optim.spec("adam", lr=2e-3),
                      schedule=optim.OneCycleLR(max_lr=5e-3, epochs=3), batch_size=25,
                      callbacks=[BestModel()], seed=3, save_dir=sys.argv[1], progress=False,
                      verbose=False)
    trainer.fit(data.train_x, data.train_y, epochs=3, validation=50)
    np.save(os.path.join(sys.argv[1], "final.npy"), trainer.params)
""")


@pytest.mark.slow
def test_kill_9_mid_epoch_with_adam_onecycle_and_validation_resumes_bitwise(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(root=ROOT))

    def run(folder, kill_at):
        return subprocess.run([sys.executable, str(script), str(folder), str(kill_at)],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "2"})

    straight = run(tmp_path / "straight", 0)
    assert straight.returncode == 0, straight.stderr
    # 10 updates per epoch: killed in the middle of epoch 2, after epoch 1's checkpoint.
    killed = run(tmp_path / "killed", 15)
    assert killed.returncode == -9
    assert not (tmp_path / "killed" / "final.npy").exists()
    resumed = run(tmp_path / "killed", 0)
    assert resumed.returncode == 0, resumed.stderr
    a = np.load(tmp_path / "straight" / "final.npy")
    b = np.load(tmp_path / "killed" / "final.npy")
    assert np.array_equal(a, b)
    for name in ("train.log", "val.log"):
        rows = [r.split(",")[:4] for r in (tmp_path / "straight" / name).read_text().split()]
        again = [r.split(",")[:4] for r in (tmp_path / "killed" / name).read_text().split()]
        assert rows == again


def test_a_checkpoint_with_the_old_flat_settings_resumes(sample, tmp_path):
    """Checkpoints written before optimizers were specs listed the driver's options flat."""
    x, y, _, _ = sample
    options = dict(lr=0.05, momentum=0.5, batch_size=20, seed=5, save_dir=str(tmp_path),
                   progress=False, verbose=False)
    homework_trainer(nn.build_model("linear", seed=1), **options).fit(x, y, epochs=1)
    path = tmp_path / "checkpoint.npz"
    arrays = dict(read_npz(str(path), "checkpoint"))
    meta = json.loads(str(arrays["__meta__"]))
    new = meta["settings"]
    old = {k: v for k, v in new.items() if k not in ("optimizer", "schedule", "callbacks",
                                                      "validation", "label_smoothing")}
    old.update(optimizer="sgd", lr=0.05, lr_decay=1e-7, weight_decay=0.0, momentum=0.5,
               t0_epochs=1, max_iter=2, switch_to_lbfgs_after=None, lbfgs_mode="torch",
               lbfgs_batch_size=None, lbfgs_max_iter=None, lr_schedule=None,
               schedule_epochs=None)
    meta["settings"] = old
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(str(path), **arrays)
    resumed = homework_trainer(nn.build_model("linear", seed=1), **options)
    resumed.fit(x, y, epochs=2)
    straight = homework_trainer(nn.build_model("linear", seed=1),
                                **{**options, "save_dir": str(tmp_path / "s")})
    straight.fit(x, y, epochs=2)
    assert np.array_equal(resumed.params, straight.params)
    with pytest.raises(SettingsMismatch, match="optimizer.momentum"):
        homework_trainer(nn.build_model("linear", seed=1),
                         **{**options, "momentum": 0.9}).fit(x, y, epochs=3)


def test_cli_trains_with_adam_onecycle_validation_and_label_smoothing(tmp_path):
    code, out, err = run_cli(*[
        "train", "--dataset", "idx", "--data", _sample_folder(), "--size", "full",
        "--model", "linear", "--optimizer", "adamw", "--learning-rate", "0.002",
        "--optimizer-option", "betas=0.9,0.99", "--schedule", "onecycle",
        "--validation", "100", "--early-stopping", "3", "--label-smoothing", "0.1",
        "--epochs", "2", "--batch-size", "50", "--save", str(tmp_path), "--progress", "off"])
    assert code == 0, err
    assert "validation: loss" in out and "test: loss" not in out    # never during training
    assert (tmp_path / "best_model.npz").exists() and (tmp_path / "val.log").exists()
    final = json.loads((tmp_path / "final_test.json").read_text())
    val = [float(r.split(",")[2]) for r in (tmp_path / "val.log").read_text().split()[1:]]
    assert final["epoch"] == 1 + int(np.argmax(val)) and final["value"] == max(val)
    assert f"test (once, the model of epoch {final['epoch']}" in out
    assert 0.5 < final["test_accuracy"] <= 1.0
    meta = json.loads(str(read_npz(str(tmp_path / "checkpoint.npz"), "checkpoint")["__meta__"]))
    s = meta["settings"]
    assert s["optimizer"] == {"name": "adamw", "lr": 0.002, "betas": [0.9, 0.99]}
    assert s["schedule"]["name"] == "onecycle" and s["schedule"]["epochs"] == 2
    assert s["schedule"]["max_lr"] == 0.002
    assert s["validation"]["count"] == 100 and s["label_smoothing"] == 0.1
    assert set(s["callbacks"]) == {"best_model", "early_stopping"}


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "optimizer 'adam' has no option momentum"),
    (["--schedule", "weekly"], "--schedule weekly is not a schedule"),
    (["--schedule", "step"], "step_size"),
    (["--early-stopping", "2"], "--early-stopping watches the validation loss"),
    (["--optimizer-option", "lr"], "--optimizer-option takes KEY=VALUE"),
    (["--optimizer", "cg", "--schedule", "cosine"], "'cg' has no learning rate"),
    (["--optimizer", "lbfgs", "--schedule", "onecycle"], "cycle_momentum=True needs"),
    (["--optimizer", "adam", "--switch-to-lbfgs-after", "2"], "--switch-to-lbfgs-after"),
])
def test_cli_refuses_bad_training_options_in_one_line(tmp_path, argv, message):
    code, out, err = run_cli(*["train", "--dataset", "idx", "--data", _sample_folder(),
                               "--size", "full", "--model", "linear", "--epochs", "1",
                               "--save", str(tmp_path), "--progress", "off"] + argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_the_confusion_matrix_has_the_models_classes():
    """Three classes: a 3x3 matrix, not 10x10; a model with more outputs than the labels
    use gets a row per output, so that every prediction can be counted."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    model = nn.build_model("mlp", input_shape=(1, 8, 8), n_classes=3, seed=1)
    trainer = Trainer(model, optimizer=optim.spec("sgd", lr=0.05), batch_size=10,
                      progress=False, verbose=False)
    stats = trainer.train_epoch(x, y)
    assert stats.confusion.n_classes == 3
    wide = Trainer(nn.build_model("mlp", input_shape=(1, 8, 8), n_classes=12, seed=1),
                   optimizer=optim.spec("sgd", lr=0.05), progress=False, verbose=False)
    assert wide.evaluate(x, y).confusion.n_classes == 12


def test_a_validation_metric_without_validation_is_refused_before_training(sample):
    x, y, _, _ = sample
    trainer = _trainer(None, callbacks=[EarlyStopping("val_loss")])
    with pytest.raises(ValueError, match="holds out no validation data"):
        trainer.fit(x, y, epochs=1)
    assert trainer.epoch == 0 and trainer.step_count == 0
