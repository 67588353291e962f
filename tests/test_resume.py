"""Explicit, safe resume: same settings continue, other settings are refused with the list of
differences, a checkpoint is checked in full before anything trains, leftovers of interrupted
writes are removed, and the save folder and epochs are checked before any work."""
import json
import os
import re

import numpy as np
import pytest

from fastconv import nn
from fastconv.datasets import load_mnist
from fastconv.serialization import atomic_savez
from fastconv.train import CheckpointError, SaveFolderError, SettingsMismatch, homework_trainer

from .test_cli_errors import assert_one_line_error, run_cli

from fastconv.datasets import SAMPLE_FOLDER  # noqa: E402

DATA = SAMPLE_FOLDER       # the MNIST sample shipped in the (installed) package
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def subset():
    with open(os.path.join(DATA, "sha256.json")) as f:
        sha = json.load(f)
    data = load_mnist(DATA, dtype=np.float32, expected_sha256=sha, offline=True)
    return data.train_x[:100], data.train_y[:100]


def _trainer(folder, **kw):
    opts = dict(loss="nll", optimizer="sgd", lr=1e-2, batch_size=10, seed=3,
                save_dir=str(folder), progress=False, verbose=False)
    opts.update(kw)
    return homework_trainer(nn.build_model("linear", loss=opts["loss"], seed=1), **opts)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_same_settings_resume_and_continue(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    resumed = _trainer(tmp_path)
    resumed.fit(x, y, epochs=2)
    assert resumed.epoch == 2 and [h["epoch"] for h in resumed.history] == [1, 2]


def test_other_learning_rate_and_momentum_are_refused_before_training(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path, lr=0.01).fit(x, y, epochs=1)
    before = _snapshot(tmp_path)
    other = _trainer(tmp_path, lr=0.5, momentum=0.9)
    params = other.params.copy()
    with pytest.raises(SettingsMismatch) as info:
        other.fit(x, y, epochs=2)
    assert [d[0] for d in info.value.differences] == ["optimizer.lr", "optimizer.momentum"]
    assert ("optimizer.lr", 0.01, 0.5) in info.value.differences
    assert "resume=False" in str(info.value) and "save_dir" in str(info.value)
    assert _snapshot(tmp_path) == before                 # nothing written
    np.testing.assert_array_equal(other.params, params)   # nothing trained or restored
    assert other.epoch == 0


def test_other_loss_is_refused(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path, loss="nll").fit(x, y, epochs=1)
    with pytest.raises(SettingsMismatch) as info:
        _trainer(tmp_path, loss="margin").fit(x, y, epochs=2)
    names = [d[0] for d in info.value.differences]
    assert "loss" in names
    # The head differs too (LogSoftmax vs none): the network is listed as well.
    assert any(n.startswith("model.layers") for n in names)


def test_no_resume_starts_over(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path, lr=0.01).fit(x, y, epochs=2)
    fresh = _trainer(tmp_path, lr=0.5)
    fresh.fit(x, y, epochs=1, resume=False)
    assert fresh.epoch == 1
    assert (tmp_path / "train.log").read_text().count("\n") == 2


def _rewrite_checkpoint(folder, edit_meta=None, **arrays):
    path = folder / "checkpoint.npz"
    with np.load(path) as ck:
        content = {k: ck[k] for k in ck.files}
    meta = json.loads(str(content["__meta__"]))
    if edit_meta:
        edit_meta(meta)
    content["__meta__"] = np.array(json.dumps(meta))
    content.update(arrays)
    atomic_savez(path, **content)


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.update(history=[{"garbage": 1}]), "history entry 1 is malformed"),
    (lambda m: m.update(history="x"), "history must be a list"),
    (lambda m: m.update(epoch=-3), "epoch and step must be >= 0"),
    (lambda m: m.update(data_rng={"bit_generator": "Nope"}), "data_rng is not a valid"),
    (lambda m: m.pop("settings"), "records no settings"),
    (lambda m: m.update(optimizer_scalars={"optimizer": "SGD"}), "optimizer state is invalid"),
])
def test_malformed_checkpoint_is_refused_before_training(subset, tmp_path, damage, message):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    _rewrite_checkpoint(tmp_path, damage)
    before = _snapshot(tmp_path)
    trainer = _trainer(tmp_path)
    params = trainer.params.copy()
    with pytest.raises(CheckpointError, match=re.escape(message)):
        trainer.fit(x, y, epochs=2)
    assert _snapshot(tmp_path) == before
    np.testing.assert_array_equal(trainer.params, params)


def test_a_branch_accepts_a_checkpoint_from_before_settings_were_recorded(subset, tmp_path):
    """Snapshots written before checkpoints recorded their settings: a plain resume is
    refused (nothing to check it against), a branch, whose caller compared the two runs'
    configurations, continues exactly as from the same checkpoint with settings."""
    x, y = subset
    _trainer(tmp_path / "a").fit(x, y, epochs=1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.npz").write_bytes((tmp_path / "a" / "checkpoint.npz")
                                                     .read_bytes())
    _rewrite_checkpoint(tmp_path / "b", lambda m: m.pop("settings"))
    with pytest.raises(CheckpointError, match="records no settings"):
        _trainer(tmp_path / "b").load_checkpoint(n_train=len(x))
    with_settings, without = _trainer(tmp_path / "a"), _trainer(tmp_path / "b")
    assert with_settings.load_checkpoint(n_train=len(x), branch=True)
    assert without.load_checkpoint(n_train=len(x), branch=True)
    assert without.epoch == with_settings.epoch == 1
    for t in (with_settings, without):
        t.fit(x, y, epochs=2, resume=False)
    np.testing.assert_array_equal(with_settings.params, without.params)


def test_checkpoint_with_wrong_arrays_is_refused(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    _rewrite_checkpoint(tmp_path, params=np.zeros(7, np.float32))
    with pytest.raises(CheckpointError, match="params has shape"):
        _trainer(tmp_path).fit(x, y, epochs=2)
    _trainer(tmp_path).fit(x, y, epochs=1, resume=False)
    _rewrite_checkpoint(tmp_path, order=np.arange(5))
    with pytest.raises(CheckpointError, match="order is not a permutation"):
        _trainer(tmp_path).fit(x, y, epochs=2)


def test_truncated_checkpoint_is_a_checkpoint_error(subset, tmp_path):
    x, y = subset
    _trainer(tmp_path).fit(x, y, epochs=1)
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        _trainer(tmp_path).fit(x, y, epochs=2)


def test_leftover_temporaries_are_removed_and_other_files_kept(subset, tmp_path):
    x, y = subset
    leftovers = ["checkpoint.npz.a1b2c3.tmp", "model.npz.zz_9.tmp", "train.log.q.tmp"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"half a write")
    keep = ["notes.tmp", "model.npz.bak", "mine.txt"]
    for name in keep:
        (tmp_path / name).write_text("user file")
    _trainer(tmp_path).fit(x, y, epochs=1)
    names = set(os.listdir(tmp_path))
    assert not names & set(leftovers)
    assert set(keep) <= names


def test_save_dir_that_is_a_file_fails_before_training(subset, tmp_path):
    x, y = subset
    target = tmp_path / "file"
    target.write_text("precious")
    trainer = _trainer(target)
    with pytest.raises(SaveFolderError, match="is a file"):
        trainer.fit(x, y, epochs=1)
    assert trainer.epoch == 0 and target.read_text() == "precious"


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True])
def test_epochs_must_be_a_positive_integer(subset, tmp_path, epochs):
    x, y = subset
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        _trainer(tmp_path).fit(x, y, epochs=epochs)
    assert not os.listdir(tmp_path)


def test_labels_of_the_wrong_length_are_named(subset, tmp_path):
    x, y = subset
    with pytest.raises(ValueError, match="train_x has 100 samples but train_y has 99 labels"):
        _trainer(tmp_path).fit(x, y[:99], epochs=1)


def test_data_of_another_dtype_says_how_to_fix_it(subset, tmp_path):
    x, y = subset
    with pytest.raises(TypeError, match=r"x.astype\(np.float32\)"):
        _trainer(tmp_path).fit(x.astype(np.float64), y, epochs=1)


# -- through the command ------------------------------------------------------------------------
def _train(save, *extra, cwd):
    return run_cli("train", "--size", "small", "--model", "linear", "--epochs", "1",
                   "--batch-size", "50", "--progress", "off", "--threads", "1",
                   "--save", save, *extra, cwd=cwd)


def test_cli_refuses_a_resume_with_other_settings(mnist_dir, tmp_path):
    save = tmp_path / "D"
    status, _, err = _train(save, "--learning-rate", "0.01", cwd=tmp_path)
    assert status == 0, err
    before = _snapshot(save)
    status, out, err = _train(save, "--learning-rate", "0.5", "--momentum", "0.9",
                              "--epochs", "2", cwd=tmp_path)
    line = assert_one_line_error(status, err, 1, "--learning-rate 0.01 there, 0.5 now",
                                 "--momentum 0.0 there, 0.9 now", "--no-resume",
                                 "another --save")
    assert str(save) in line
    assert _snapshot(save) == before
    # The same settings continue; --no-resume starts over with the new ones.
    status, out, err = _train(save, "--learning-rate", "0.01", "--epochs", "2", cwd=tmp_path)
    assert status == 0 and "resuming from" in out, err
    status, out, err = _train(save, "--learning-rate", "0.5", "--no-resume", cwd=tmp_path)
    assert status == 0, err
    assert (save / "train.log").read_text().count("\n") == 2


def test_cli_truncated_checkpoint_names_the_ways_out(mnist_dir, tmp_path):
    save = tmp_path / "D"
    assert _train(save, cwd=tmp_path)[0] == 0
    path = save / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:100])
    status, _, err = _train(save, "--epochs", "2", cwd=tmp_path)
    assert_one_line_error(status, err, 1, str(path), "truncated or corrupt", "--no-resume",
                          "another --save")


def test_readme_examples_train_into_distinct_folders():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    api = re.findall(r'save_dir="([^"]+)"', text)
    cli = re.findall(r"fastconv train [^\n]*--save (\S+)", text)
    assert api and cli
    folders = api + cli
    assert len(folders) == len(set(folders)), folders


def test_the_natural_first_script_works_with_the_defaults(subset, tmp_path):
    # load_mnist, build_model and the layers share one default dtype (float32): no dtype
    # argument anywhere.
    x, y = subset
    model = nn.build_model("linear", seed=1)
    history = homework_trainer(model, save_dir=str(tmp_path), progress=False,
                      verbose=False).fit(x, y, epochs=1)
    assert len(history) == 1


def test_negative_t0_is_refused_in_epochs():
    with pytest.raises(ValueError, match=r"t0_epochs must be >= 0; got -1.0"):
        homework_trainer(nn.build_model("linear"), optimizer="asgd", t0_epochs=-1)


def test_load_checkpoint_before_fit_restores(subset, tmp_path):
    # bench/_runner.py restores first, then calls fit(resume=False) epoch by epoch.
    x, y = subset
    done = _trainer(tmp_path)
    done.fit(x, y, epochs=1)
    again = _trainer(tmp_path)
    assert again.load_checkpoint() and again.epoch == 1
    np.testing.assert_array_equal(again.params, done.params)
    with pytest.raises(SettingsMismatch, match="lr"):
        _trainer(tmp_path, lr=0.3).load_checkpoint()
