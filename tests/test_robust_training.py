"""What a user's file or call can do to training: other data on resume, a checkpoint that
cannot be restored, unreadable data files, a module used twice, BatchNorm in large batches,
empty batches, parameters that are not arrays, data files that are links."""
import copy
import json
import os

import numpy as np
import pytest

from fastconv import cli, nn
from fastconv.datasets import DataFileError, load_mnist_sample
from fastconv.datasets import _idx
from fastconv.serialization import atomic_savez, load_model, read_npz
from fastconv.train import CheckpointError, SettingsMismatch, homework_trainer

from .test_cli_errors import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def subset():
    data = load_mnist_sample(size=(100, 10), dtype=np.float32)
    return data.train_x, data.train_y


def _trainer(folder, model=None, **kw):
    opts = dict(optimizer="sgd", lr=1e-2, batch_size=10, seed=3, save_dir=str(folder),
                progress=False, verbose=False)
    opts.update(kw)
    return homework_trainer(model or nn.build_model("linear", seed=1), **opts)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


# -- defect 4: other data on resume -------------------------------------------------------------

def test_resume_on_other_preprocessing_is_refused(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    before = _snapshot(tmp_path)
    with pytest.raises(SettingsMismatch) as info:
        _trainer(tmp_path).fit(x * np.float32(0.5), y, epochs=2)
    assert [d[0] for d in info.value.differences] == ["data"]
    assert _snapshot(tmp_path) == before
    # The same data continues.
    assert len(_trainer(tmp_path).fit(x, y, epochs=2)) == 2


def test_cli_resume_with_local_contrast_is_refused(mnist_dir, tmp_path):
    save = tmp_path / "D"
    common = ["train", "--data", mnist_dir, "--size", "small", "--model", "linear",
              "--batch-size", "100", "--progress", "off", "--threads", "1", "--save", save]
    status, _, err = run_cli(*common, "--epochs", "1", cwd=tmp_path)
    assert status == 0, err
    before = _snapshot(save)
    status, _, err = run_cli(*common, "--epochs", "2", "--local-contrast", cwd=tmp_path)
    assert_one_line_error(status, err, 1, "the training data", "--local-contrast",
                          "--no-resume")
    assert _snapshot(save) == before
    _, meta = load_model(save / "model.npz")
    assert meta["local_contrast"] is False and meta["epoch"] == 1


# -- defect 6: a checkpoint that cannot be restored leaves the Trainer as it was ------------------

def _rewrite_checkpoint(path, meta_change=None, **arrays):
    entries = dict(read_npz(path, "checkpoint"))
    meta = json.loads(str(entries["__meta__"]))
    if meta_change:
        meta_change(meta)
    entries["__meta__"] = np.array(json.dumps(meta))
    entries.update(arrays)
    atomic_savez(path, **entries)


def _state(trainer):
    return (trainer.params.copy(), [b.copy() for b in trainer.model.buffers()], trainer.epoch,
            trainer.step_count, list(trainer.history), trainer.data_rng.bit_generator.state,
            trainer._stepper)


def _assert_same_state(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    for u, v in zip(a[1], b[1]):
        np.testing.assert_array_equal(u, v)
    assert a[2:] == b[2:]


def test_checkpoint_with_another_generator_leaves_the_trainer_as_it_was(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    other = np.random.MT19937(5).state
    other["state"]["key"] = other["state"]["key"].tolist()
    _rewrite_checkpoint(tmp_path / "checkpoint.npz",
                        lambda meta: meta.update(data_rng=other))
    trainer = _trainer(tmp_path)
    before = _state(trainer)
    with pytest.raises(CheckpointError, match="data_rng is the state of a MT19937 generator"):
        trainer.load_checkpoint(n_train=len(y))
    _assert_same_state(_state(trainer), before)


def test_a_failure_while_restoring_puts_everything_back(subset, tmp_path, monkeypatch):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    trainer = _trainer(tmp_path)
    before = _state(trainer)

    def fails(epoch):
        raise RuntimeError("simulated")
    monkeypatch.setattr(trainer, "_optimizer_for_epoch", fails)
    with pytest.raises(CheckpointError, match="left as it was"):
        trainer.load_checkpoint(n_train=len(y))
    _assert_same_state(_state(trainer), before)


def _batchnorm_model():
    return nn.Sequential(nn.Conv2d(1, 2, 5, dtype=np.float32), nn.BatchNorm2d(2, dtype=np.float32),
                         nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(2 * 7 * 7, 10, dtype=np.float32), nn.LogSoftmax())


@pytest.mark.parametrize("buffer, message", [
    (np.zeros(2, dtype=[("a", "f4")]), r"buffer/000 \(BatchNorm2d.running_mean\) has dtype"),
    (np.array([np.nan, 0], np.float32), "buffer/000 .* NaN"),
    (np.zeros(2, "datetime64[s]"), "has dtype datetime64"),
    (np.zeros(3, np.float32), r"has shape \(3,\)")])
def test_checkpoint_buffers_are_checked_before_anything_changes(subset, tmp_path, buffer,
                                                                message):
    x, y = subset
    _trainer(tmp_path, _batchnorm_model()).fit(x, y, epochs=1)
    _rewrite_checkpoint(tmp_path / "checkpoint.npz", **{"buffer/000": buffer})
    trainer = _trainer(tmp_path, _batchnorm_model())
    before = _state(trainer)
    with pytest.raises(CheckpointError, match=message):
        trainer.load_checkpoint(n_train=len(y))
    _assert_same_state(_state(trainer), before)


@pytest.mark.parametrize("command", ["train", "test"])
def test_unreadable_data_file_is_one_line(mnist_dir, tmp_path, monkeypatch, capsys, command):
    # Root reads anything: refuse where the data files are opened, as chmod 000 would.
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if "train-labels" in os.fspath(path) or "t10k-labels" in os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(_idx, "open", refusing_open, raising=False)
    model = tmp_path / "model.npz"
    from fastconv.serialization import save_model
    save_model(model, nn.build_model("linear", seed=1), {"loss": "nll"})
    args = {"train": ["train", "--model", "linear", "--save", str(tmp_path / "D")],
            "test": ["test", "--model-file", str(model)]}[command]
    status = cli.main(args + ["--data", mnist_dir, "--size", "small", "--threads", "1"])
    err = capsys.readouterr().err
    line = assert_one_line_error(status, err, 1, "Permission denied", "labels-idx1-ubyte")
    assert line.startswith(f"fastconv {command}: error: ")


def test_extra_conv_without_a_convnet_is_one_line(tmp_path, capsys):
    status = cli.main(["train", "--extra-conv", "--model", "linear", "--save",
                       str(tmp_path / "D")])
    assert_one_line_error(status, capsys.readouterr().err, 1, "--extra-conv",
                          "--model linear")
    assert not (tmp_path / "D").exists()


# -- defect 8 --------------------------------------------------------------------------------------

def test_flatten_takes_an_empty_batch():
    f = nn.Flatten()
    assert f.forward(np.zeros((0, 2, 3, 3))).shape == (0, 18)
    assert f.backward(np.zeros((0, 18))).shape == (0, 2, 3, 3)
    model = nn.build_model("linear", seed=1)
    assert model.forward(np.zeros((0, 1, 32, 32), np.float32)).shape == (0, 10)


def test_a_parameter_that_is_not_an_array_is_a_type_error():
    layer = nn.Linear(3, 2)
    layer.weight = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    for call in (lambda: layer.forward(np.zeros((1, 3))), layer.flat_parameters,
                 layer.params):
        with pytest.raises(TypeError, match="Linear.weight must be a numpy array; got list"):
            call()


def test_a_module_used_twice_is_refused_naming_both_positions():
    linear, relu = nn.Linear(3, 3), nn.ReLU()
    with pytest.raises(ValueError, match="same Linear is at positions 0 and 2"):
        nn.Sequential(linear, relu, linear)
    with pytest.raises(ValueError, match=r"same ReLU is at positions 0\[1\] and 2"):
        nn.Sequential(nn.Sequential(nn.Linear(3, 3), relu), nn.Tanh(), relu)
    chain = nn.Sequential(linear, relu)
    with pytest.raises(ValueError, match="same Linear is at positions 0 and 2"):
        chain.add(linear)
    with pytest.raises(ValueError, match="cannot contain itself"):
        chain.add(chain)
    assert len(chain) == 2
    # Copies are separate modules.
    nn.Sequential(linear, relu, copy.deepcopy(linear))


def test_batchnorm_sees_the_whole_batch_above_the_chunk_size(subset):
    x, y = subset
    x, y = np.concatenate([x] * 6), np.concatenate([y] * 6)     # 600 samples, one batch
    model = _batchnorm_model()
    reference = copy.deepcopy(model)
    trainer = homework_trainer(model, lr=0.0, batch_size=600, progress=False, verbose=False)
    trainer.fit(x, y, epochs=1)
    reference.train()
    reference.forward(x[trainer.order])
    bn, bn_ref = model[1], reference[1]
    np.testing.assert_allclose(bn.running_mean, bn_ref.running_mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, bn_ref.running_var, rtol=1e-5)
    assert model.depends_on_batch() and not nn.build_model("linear").depends_on_batch()


def test_a_data_file_linked_elsewhere_is_described_not_echoed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password=hunter2 and more")
    link = tmp_path / "train-images-idx3-ubyte.gz"
    link.symlink_to(secret)
    with pytest.raises(DataFileError) as info:
        _idx.read_bytes(link)
    message = str(info.value)
    assert "hunter2" not in message and "password" not in message
    assert "not a gzip file (it holds text; it is a link to" in message
    assert str(secret) in message


def test_full_disk_while_training_is_one_line(mnist_dir, tmp_path, monkeypatch, capsys):
    import errno

    from fastconv import train

    def full(self):
        path = os.path.join(self.save_dir, "checkpoint.npz")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    monkeypatch.setattr(train.Trainer, "save_checkpoint", full)
    status = cli.main(["train", "--model", "linear", "--data", mnist_dir, "--size", "small",
                       "--epochs", "1", "--batch-size", "100", "--threads", "1",
                       "--save", str(tmp_path / "D")])
    assert_one_line_error(status, capsys.readouterr().err, 1, "checkpoint.npz",
                          "No space left on device", "free space and rerun the same command")
